/* pylon.ratelimit._atomic: one compare-and-swap of an aligned 64-bit word in shared memory.
 *
 * cas64(address, expected, new) -> bool: the word at ``address`` (an int: the mmap'd table's
 * base plus an offset, SharedTable keeps the mapping alive) becomes ``new`` if it still holds
 * ``expected``.  Built by ``pip install`` where a C compiler exists (setup.py, optional);
 * without it the tables call libatomic through ctypes, or take fcntl locks
 * (pylon/ratelimit/local.py).  A call costs ~0.05 µs against ~1 µs through ctypes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

static PyObject *
cas64(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "cas64(address, expected, new) takes 3 arguments");
        return NULL;
    }
    unsigned long long addr = PyLong_AsUnsignedLongLong(args[0]);
    if (addr == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    unsigned long long expected = PyLong_AsUnsignedLongLong(args[1]);
    if (expected == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    unsigned long long desired = PyLong_AsUnsignedLongLong(args[2]);
    if (desired == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    if (addr == 0 || (addr & 7) != 0) {
        PyErr_SetString(PyExc_ValueError, "cas64: the address must be 8-byte aligned");
        return NULL;
    }
    uint64_t exp = (uint64_t)expected;
    int ok = __atomic_compare_exchange_n((uint64_t *)(uintptr_t)addr, &exp, (uint64_t)desired,
                                         0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return PyBool_FromLong(ok);
}

static PyMethodDef methods[] = {
    {"cas64", (PyCFunction)(void (*)(void))cas64, METH_FASTCALL,
     "cas64(address, expected, new) -> bool: compare-and-swap of the 64-bit word at address"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_atomic", NULL, 0, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__atomic(void)
{
    return PyModule_Create(&module);
}
