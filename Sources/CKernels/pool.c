// A persistent thread pool for fork-join parallelism over a fixed number of threads.
// Workers spin on a generation counter for a short while after each job (a decode step issues
// hundreds of small jobs), then sleep on a condition variable so an idle process uses no CPU.
#include "CKernels.h"
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>

#define RK_MAX_THREADS 64
#define RK_SPIN_ITERATIONS 200000

static int pool_threads = 1;
static atomic_int started = 0;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static atomic_uint generation = 0;   // incremented for each job
static atomic_int pending = 0;       // workers still running the current job
static atomic_int sleepers = 0;      // workers blocked on the condition variable
static rk_task_fn job_fn;
static void *job_context;

static inline void cpu_relax(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}

static void *worker(void *arg) {
    int index = (int)(intptr_t)arg;
    unsigned seen = 0;
    for (;;) {
        int spins = 0;
        while (atomic_load_explicit(&generation, memory_order_acquire) == seen) {
            if (++spins < RK_SPIN_ITERATIONS) { cpu_relax(); continue; }
            // seq_cst ordering with rk_pool_run: either it sees us as a sleeper and signals under the
            // lock, or we see its new generation before waiting.
            pthread_mutex_lock(&lock);
            atomic_fetch_add(&sleepers, 1);
            while (atomic_load(&generation) == seen) pthread_cond_wait(&wake, &lock);
            atomic_fetch_sub(&sleepers, 1);
            pthread_mutex_unlock(&lock);
        }
        seen = atomic_load_explicit(&generation, memory_order_acquire);
        job_fn(job_context, index, pool_threads);
        atomic_fetch_sub_explicit(&pending, 1, memory_order_acq_rel);
    }
    return NULL;
}

void rk_pool_start(int threads) {
    pthread_mutex_lock(&lock);
    if (!atomic_load(&started)) {
        if (threads < 1) threads = 1;
        if (threads > RK_MAX_THREADS) threads = RK_MAX_THREADS;
        pool_threads = threads;
        for (int i = 1; i < threads; i++) {
            pthread_t t;
            pthread_attr_t attr;
            pthread_attr_init(&attr);
            pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
            pthread_create(&t, &attr, worker, (void *)(intptr_t)i);
            pthread_attr_destroy(&attr);
        }
        atomic_store(&started, 1);
    }
    pthread_mutex_unlock(&lock);
}

int rk_pool_threads(void) { return pool_threads; }

void rk_pool_run(rk_task_fn fn, void *context) {
    if (!atomic_load(&started)) rk_pool_start(1);
    if (pool_threads == 1) { fn(context, 0, 1); return; }
    job_fn = fn;
    job_context = context;
    atomic_store_explicit(&pending, pool_threads - 1, memory_order_release);
    atomic_fetch_add(&generation, 1);
    if (atomic_load(&sleepers) > 0) {
        pthread_mutex_lock(&lock);
        pthread_cond_broadcast(&wake);
        pthread_mutex_unlock(&lock);
    }
    fn(context, 0, pool_threads);
    while (atomic_load_explicit(&pending, memory_order_acquire) > 0) cpu_relax();
}
