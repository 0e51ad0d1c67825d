/*
 * qz_quiet.so: set QATzip's log level to LOG_NONE when a process that has
 * QATzip loaded starts (LD_PRELOAD). QATzip 1.3.1 has no environment
 * variable or configuration for its log level, only qzSetLogLevel(), and
 * QEMU's migration/multifd-qatzip.c never calls it.
 *
 * A measurement aid for benchmarks/qatzip/README.md, not a recommendation:
 * it silences every QATzip message, real errors included, and does nothing
 * about qatlib's "Cannot open /dev/vfio" (an unconditional fprintf).
 * QATzip is looked up at run time, so the library is a no-op in processes
 * without it (libvirtd itself, which passes LD_PRELOAD on to QEMU).
 *
 *   gcc -shared -fPIC -O2 -o qz_quiet.so qz_quiet.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

#define QZ_LOG_NONE 0   /* QzLogLevel_T LOG_NONE in qatzip.h */

__attribute__((constructor))
static void qz_quiet(void)
{
    int (*set_level)(int) = (int (*)(int))dlsym(RTLD_DEFAULT,
                                                "qzSetLogLevel");

    if (set_level != NULL) {
        set_level(QZ_LOG_NONE);
    }
}
