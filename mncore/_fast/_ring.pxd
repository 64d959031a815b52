from libc.stdint cimport uint64_t


cdef class Mailbox:
    cdef object _seg
    cdef object _name
    cdef readonly object _bell
    cdef unsigned char[::1] _view
    cdef unsigned char *_base
    cdef int _fd
    cdef uint64_t _cap
    cdef readonly Py_ssize_t _max_single

    cdef int _enter(self) except -1
    cdef void _leave(self) noexcept
    cdef void _repair(self) noexcept
    cdef bint _should_ring(self, Py_ssize_t offset) noexcept
    cdef bint _write(self, int kind, const unsigned char *data, Py_ssize_t n) noexcept
    cdef int _push_ptr(self, int kind, const unsigned char *data, Py_ssize_t n, uint64_t token, bint park) except -1
    cdef int _push_obj(self, int kind, object data, uint64_t token, bint park) except -1
    cdef list _take_singles(self, Py_ssize_t limit)
