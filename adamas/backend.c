/* backend.c - where decode steps run: this library's CPU kernels, or the GPU module
 * loaded at run time.  The core never links a GPU runtime; it finds the module by
 * path and talks to it through the table of gpu_module.h. */
#define _GNU_SOURCE /* dladdr: where libadamas itself was loaded from */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "error.h"

#define MODULE_FILE "libadamas_cuda.so"

static pthread_once_t module_once = PTHREAD_ONCE_INIT;
static const adamas_gpu_module *module;
static char module_error[512]; /* why the module could not be had */
static char device_name[256];

/* dlopen the first candidate that loads; module_error says what went wrong. */
static void *open_module(void)
{
    const char *explicit_path = getenv("ADAMAS_CUDA_MODULE");
    if (explicit_path && *explicit_path) {
        void *h = dlopen(explicit_path, RTLD_NOW | RTLD_LOCAL);
        if (!h)
            snprintf(module_error, sizeof module_error, "ADAMAS_CUDA_MODULE=%s: %s", explicit_path,
                     dlerror());
        return h;
    }
    /* beside libadamas (installed), or in the build tree's gpu/; when libadamas is
     * linked statically into a program started without a path, the program's own
     * directory (Linux names it in /proc/self/exe) */
    Dl_info self;
    if (dladdr((void *)adamas_set_backend, &self) && self.dli_fname) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", self.dli_fname);
        if (!strchr(dir, '/')) {
            ssize_t len = readlink("/proc/self/exe", dir, sizeof dir - 1);
            dir[len > 0 ? len : 0] = '\0';
        }
        char *slash = strrchr(dir, '/');
        if (slash) {
            *slash = '\0';
            static const char *places[] = {"%s/" MODULE_FILE, "%s/gpu/" MODULE_FILE,
                                           "%s/../gpu/" MODULE_FILE};
            for (size_t i = 0; i < sizeof places / sizeof places[0]; i++) {
                char path[4200];
                snprintf(path, sizeof path, places[i], dir);
                void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
                if (h)
                    return h;
            }
        }
    }
    void *h = dlopen(MODULE_FILE, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        snprintf(module_error, sizeof module_error,
                 "the CUDA module %s was not found beside libadamas or on the loader's path "
                 "(set ADAMAS_CUDA_MODULE to its path): %s",
                 MODULE_FILE, dlerror());
    return h;
}

static void load_module(void)
{
    void *h = open_module();
    if (!h)
        return;
    adamas_gpu_module_get_fn get;
    *(void **)&get = dlsym(h, ADAMAS_GPU_MODULE_SYMBOL);
    const adamas_gpu_module *m = get ? get() : NULL;
    if (!m || m->abi != ADAMAS_GPU_ABI) {
        snprintf(module_error, sizeof module_error,
                 "%s is not an adamas GPU module of ABI %d (%s)", MODULE_FILE, ADAMAS_GPU_ABI,
                 get ? "wrong ABI" : "no " ADAMAS_GPU_MODULE_SYMBOL);
        dlclose(h);
        return;
    }
    if (m->probe(device_name, sizeof device_name) != ADAMAS_OK) {
        snprintf(module_error, sizeof module_error, "the CUDA module found no usable device: %s",
                 m->error());
        return; /* keep it loaded: dlclose of a CUDA runtime user is not worth the risk */
    }
    module = m;
}

const adamas_gpu_module *adamas_gpu(void)
{
    pthread_once(&module_once, load_module);
    return module;
}

/* ------------------------------------------------------------ the choice */

static _Atomic int chosen = -1; /* adamas_backend_kind, or -1 before the first use */

static int resolve(const char *name, const char *origin, adamas_backend_kind *out)
{
    if (!name || !*name || strcmp(name, "cpu") == 0) {
        *out = ADAMAS_BACKEND_KIND_CPU;
        return ADAMAS_OK;
    }
    if (strcmp(name, "auto") == 0) {
        *out = adamas_gpu() ? ADAMAS_BACKEND_KIND_CUDA : ADAMAS_BACKEND_KIND_CPU;
        return ADAMAS_OK;
    }
    if (strcmp(name, "cuda") != 0)
        return adamas_fail(ADAMAS_EINVAL, "%s: unknown backend \"%s\" (expected cpu, cuda or auto)",
                           origin, name);
    if (!adamas_gpu())
        return adamas_fail(ADAMAS_ENOTSUP, "%s: cuda: %s", origin, module_error);
    *out = ADAMAS_BACKEND_KIND_CUDA;
    return ADAMAS_OK;
}

int adamas_backend_current(adamas_backend_kind *out)
{
    int k = atomic_load(&chosen);
    if (k < 0) {
        adamas_backend_kind kind;
        /* a bad ADAMAS_BACKEND is not remembered: every call reports it again */
        int st = resolve(getenv("ADAMAS_BACKEND"), "ADAMAS_BACKEND", &kind);
        if (st)
            return st;
        k = (int)kind;
        atomic_store(&chosen, k);
    }
    *out = (adamas_backend_kind)k;
    return ADAMAS_OK;
}

int adamas_set_backend(const char *name)
{
    adamas_backend_kind kind;
    int st = resolve(name, "adamas_set_backend", &kind);
    if (st)
        return st;
    atomic_store(&chosen, (int)kind);
    return ADAMAS_OK;
}

const char *adamas_backend_name(void)
{
    adamas_backend_kind kind;
    if (adamas_backend_current(&kind))
        return "none";
    return kind == ADAMAS_BACKEND_KIND_CUDA ? "cuda" : "cpu";
}

const char *adamas_gpu_device_name(void)
{
    return adamas_gpu() ? device_name : "";
}

/* A module failure as the core's error: the module's message, named. */
int adamas_gpu_fail(int status, const char *fn)
{
    return adamas_fail(status < 0 ? status : ADAMAS_EIO, "%s (cuda): %s", fn,
                       module ? module->error() : "no module");
}
