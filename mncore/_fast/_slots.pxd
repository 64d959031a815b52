from libc.stdint cimport uint32_t, uint64_t


cdef class SlotTable:
    cdef object _seg
    cdef object _name
    cdef readonly object _bell
    cdef unsigned char[::1] _view
    cdef unsigned char *_base
    cdef int _fd
    cdef Py_ssize_t _entries
    cdef Py_ssize_t _max
    cdef list _names
    cdef dict _index

    cdef int _enter(self) except -1
    cdef void _leave(self) noexcept
    cdef void _repair(self) noexcept
    cdef unsigned char *_entry(self, Py_ssize_t index) noexcept
    cdef unsigned char *_poolp(self, Py_ssize_t index) noexcept
    cdef Py_ssize_t _find(self, bytes key) noexcept
    cdef Py_ssize_t _alloc(self) noexcept
    cdef void _free(self, Py_ssize_t index) noexcept
    cdef bint _grant(self, Py_ssize_t pool) noexcept
    cdef bint _remove(self, Py_ssize_t index, bint grant=*) noexcept
    cdef void _ring_after(self, bint ring) noexcept
    cdef list _rows(self)
    cdef bint _request(self, object pool, object slots, object owner_pid, object lease_id, int mode) except -1
    cdef tuple _enqueue_c(self, Py_ssize_t index, uint32_t slots, uint32_t owner, bytes key, int mode)
    cdef bint _drop(self, bytes key, bint only_queued) except -1
