# Inline C helpers shared by _ring.pyx and _slots.pyx (compiled into each; no runtime module).
#
# The lock is a process-shared robust pthread mutex (layout.py): trylock with a short pause
# spin while holding the GIL, then a blocking lock without it. EOWNERDEAD is made consistent
# here and reported as 1 so the caller repairs derived counters.

from libc.stdint cimport uint16_t, uint32_t, uint64_t


cdef extern from *:
    """
    #include <errno.h>
    #include <pthread.h>
    #include <stdint.h>
    #include <string.h>
    #include <sys/types.h>
    #include <unistd.h>

    static inline uint64_t mn_load64(const unsigned char *p) {
        return __atomic_load_n((const uint64_t *)p, __ATOMIC_ACQUIRE);
    }
    static inline void mn_store64(unsigned char *p, uint64_t v) {
        __atomic_store_n((uint64_t *)p, v, __ATOMIC_RELEASE);
    }
    static inline void mn_relax(void) {
    #if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
    #elif defined(__aarch64__) || defined(__arm__)
        __asm__ __volatile__("yield" ::: "memory");
    #else
        __asm__ __volatile__("" ::: "memory");
    #endif
    }
    /* 0 locked, 1 locked after the previous holder died, 2 busy, <0 -errno */
    static inline int mn_trylock(unsigned char *m) {
        int rc = pthread_mutex_trylock((pthread_mutex_t *)m);
        if (rc == 0) return 0;
        if (rc == EOWNERDEAD) { pthread_mutex_consistent((pthread_mutex_t *)m); return 1; }
        return rc == EBUSY ? 2 : -rc;
    }
    static inline int mn_lock(unsigned char *m) {
        int rc = pthread_mutex_lock((pthread_mutex_t *)m);
        if (rc == 0) return 0;
        if (rc == EOWNERDEAD) { pthread_mutex_consistent((pthread_mutex_t *)m); return 1; }
        return -rc;
    }
    static inline void mn_unlock(unsigned char *m) {
        pthread_mutex_unlock((pthread_mutex_t *)m);
    }
    static int mn_mutex_init(unsigned char *m) {
        pthread_mutexattr_t attr;
        int rc = pthread_mutexattr_init(&attr);
        if (!rc) rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
        if (!rc) rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
        if (!rc) rc = pthread_mutex_init((pthread_mutex_t *)m, &attr);
        pthread_mutexattr_destroy(&attr);
        return rc;
    }
    static inline int mn_mutex_size(void) { return (int)sizeof(pthread_mutex_t); }
    static inline void mn_ring(int fd, long offset) {
        char zero = 0;
        ssize_t rc = pwrite(fd, &zero, 1, (off_t)offset);
        (void)rc;
    }
    """
    uint64_t mn_load64(const unsigned char *p) nogil
    void mn_store64(unsigned char *p, uint64_t v) nogil
    void mn_relax() nogil
    int mn_trylock(unsigned char *m) nogil
    int mn_lock(unsigned char *m) nogil
    void mn_unlock(unsigned char *m) nogil
    int mn_mutex_init(unsigned char *m) nogil
    int mn_mutex_size() nogil
    void mn_ring(int fd, long offset) nogil


cdef inline int shm_lock(unsigned char *m) except -1:
    """Lock; returns 1 when the previous holder died inside its critical section."""
    cdef int rc
    cdef int i
    for i in range(64):
        rc = mn_trylock(m)
        if rc == 0 or rc == 1:
            return rc
        if rc < 0:
            raise OSError(-rc, "pthread_mutex_trylock failed")
        mn_relax()
    with nogil:
        rc = mn_lock(m)
    if rc < 0:
        raise OSError(-rc, "pthread_mutex_lock failed")
    return rc


cdef inline uint64_t *u64(unsigned char *p) noexcept nogil:
    return <uint64_t *>p


cdef inline uint32_t *u32(unsigned char *p) noexcept nogil:
    return <uint32_t *>p


cdef inline uint16_t *u16(unsigned char *p) noexcept nogil:
    return <uint16_t *>p
