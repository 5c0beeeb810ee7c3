/* backend.h - the backend a cache runs on, and the loaded GPU module. */
#ifndef ADAMAS_BACKEND_H
#define ADAMAS_BACKEND_H

#include "gpu_module.h"

typedef enum { ADAMAS_BACKEND_KIND_CPU = 0, ADAMAS_BACKEND_KIND_CUDA = 1 } adamas_backend_kind;

/* Backend for a new cache: adamas_set_backend's choice, else ADAMAS_BACKEND, else cpu.
 * Fails (message set) when ADAMAS_BACKEND names a backend that cannot run here. */
int adamas_backend_current(adamas_backend_kind *out);

/* The GPU module with a usable device, loaded on first call; NULL when there is none. */
const adamas_gpu_module *adamas_gpu(void);

/* Name of the module's device ("" without one). */
const char *adamas_gpu_device_name(void);

/* Record a failed module call of function fn (the module's own message) and return
 * its status. */
int adamas_gpu_fail(int status, const char *fn);

#endif
