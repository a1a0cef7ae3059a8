/*
 * Event records of a batch, built in C.
 *
 * A cursor read one event at a time makes an Event (a tuple subclass of id, key,
 * value, flags) per row. Built with map() and zip() that costs a zip tuple, a
 * second tuple for the subclass and garbage-collector work for each: the
 * events hold only ints and bytes, so they can never be part of a cycle, and
 * are untracked here as CPython untracks such plain tuples itself.
 *
 * Optional: without a compiler the package uses the same construction in
 * Python (monotone/event.py), with the same results.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* a column's buffer may sit at any address (a view into a decoded region) */
static inline uint64_t
u64(const uint64_t *column, Py_ssize_t i)
{
    uint64_t value;
    memcpy(&value, (const char *)column + 8 * i, 8);
    return value;
}

typedef struct {
    Py_buffer view;
    int held;
} column;

static int
take(PyObject *obj, column *c, Py_ssize_t itemsize, const char *name)
{
    if (PyObject_GetBuffer(obj, &c->view, PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    c->held = 1;
    if (c->view.len % itemsize != 0) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes is not a whole number of %zd-byte items",
                     name, c->view.len, itemsize);
        return -1;
    }
    return 0;
}

static void
give(column *c)
{
    if (c->held)
        PyBuffer_Release(&c->view);
    c->held = 0;
}

/* offsets must ascend and end within data: they come from checked regions or
 * shared memory, but a bad one must raise, never read outside data */
static int
check_offsets(const uint64_t *off, Py_ssize_t n, Py_ssize_t data_len, const char *name)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        if (u64(off, i + 1) < u64(off, i) || u64(off, i + 1) > (uint64_t)data_len) {
            PyErr_Format(PyExc_ValueError, "%s offsets do not ascend within their data at row %zd",
                         name, i);
            return -1;
        }
    }
    return 0;
}

static PyObject *
bytes_at(const char *data, const uint64_t *off, Py_ssize_t i, PyObject *empty)
{
    uint64_t start = u64(off, i);
    Py_ssize_t size = (Py_ssize_t)(u64(off, i + 1) - start);
    if (size == 0) {
        Py_INCREF(empty);
        return empty;
    }
    return PyBytes_FromStringAndSize(data + start, size);
}

static PyObject *
build(PyObject *module, PyObject *args)
{
    PyObject *cls, *ids_o, *flags_o, *koff_o, *kdata_o, *voff_o, *vdata_o;
    if (!PyArg_ParseTuple(args, "O!OOOOOO:build", &PyType_Type, &cls, &ids_o, &flags_o,
                          &koff_o, &kdata_o, &voff_o, &vdata_o))
        return NULL;
    PyTypeObject *type = (PyTypeObject *)cls;
    /* untracked records must not be able to hold a cycle: no __dict__ of their own */
    if (!PyType_IsSubtype(type, &PyTuple_Type) || type->tp_dictoffset != 0) {
        PyErr_SetString(PyExc_TypeError,
                        "build: the record type must be a tuple subclass without a __dict__");
        return NULL;
    }
    column ids = {0}, flags = {0}, koff = {0}, kdata = {0}, voff = {0}, vdata = {0};
    PyObject *out = NULL, *empty = NULL, *zero = NULL;
    if (take(ids_o, &ids, 8, "ids") < 0 || take(flags_o, &flags, 1, "flags") < 0 ||
        take(koff_o, &koff, 8, "key offsets") < 0 || take(kdata_o, &kdata, 1, "keys") < 0 ||
        take(voff_o, &voff, 8, "value offsets") < 0 || take(vdata_o, &vdata, 1, "values") < 0)
        goto done;
    Py_ssize_t n = ids.view.len / 8;
    if (flags.view.len != n || koff.view.len != 8 * (n + 1) || voff.view.len != 8 * (n + 1)) {
        PyErr_SetString(PyExc_ValueError, "build: columns of different lengths");
        goto done;
    }
    const uint64_t *id = ids.view.buf, *ko = koff.view.buf, *vo = voff.view.buf;
    const uint8_t *fl = flags.view.buf;
    const char *kd = kdata.view.buf, *vd = vdata.view.buf;
    if (check_offsets(ko, n, kdata.view.len, "key") < 0 ||
        check_offsets(vo, n, vdata.view.len, "value") < 0)
        goto done;
    empty = PyBytes_FromStringAndSize(NULL, 0);
    zero = PyLong_FromLong(0);
    out = PyList_New(n);
    if (empty == NULL || zero == NULL || out == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *event = type->tp_alloc(type, 4);
        if (event == NULL)
            goto fail;
#if PY_VERSION_HEX >= 0x030E0000
        ((PyTupleObject *)event)->ob_hash = -1; /* a tuple caches its hash from 3.14 on */
#endif
        PyList_SET_ITEM(out, i, event);
        PyObject *item = PyLong_FromUnsignedLongLong(u64(id, i));
        if (item == NULL)
            goto fail;
        PyTuple_SET_ITEM(event, 0, item);
        if ((item = bytes_at(kd, ko, i, empty)) == NULL)
            goto fail;
        PyTuple_SET_ITEM(event, 1, item);
        if ((item = bytes_at(vd, vo, i, empty)) == NULL)
            goto fail;
        PyTuple_SET_ITEM(event, 2, item);
        if (fl[i] == 0) {
            Py_INCREF(zero);
            item = zero;
        } else if ((item = PyLong_FromLong(fl[i])) == NULL) {
            goto fail;
        }
        PyTuple_SET_ITEM(event, 3, item);
        if (PyObject_GC_IsTracked(event))
            PyObject_GC_UnTrack(event);
    }
    goto done;
fail:
    Py_CLEAR(out);
done:
    Py_XDECREF(empty);
    Py_XDECREF(zero);
    give(&ids);
    give(&flags);
    give(&koff);
    give(&kdata);
    give(&voff);
    give(&vdata);
    return out;
}

static PyMethodDef methods[] = {
    {"build", build, METH_VARARGS,
     "build(cls, ids, flags, key_offsets, key_data, value_offsets, value_data) -> list\n"
     "One cls(id, key, value, flags) per row; the columns are C-contiguous buffers."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "monotone._events", "Event records of a batch, built in C.", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__events(void)
{
    return PyModule_Create(&module);
}
