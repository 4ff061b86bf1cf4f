// A persistent thread pool for fork-join parallelism over a fixed number of partitions.
//
// A job has one partition per thread. The calling thread runs partition 0, then claims every partition
// no worker has started yet and runs it too; it waits only for partitions a worker really claimed. So a
// worker that is descheduled (the machine is shared) never stalls the job: the caller does its share.
// Claims carry the job's generation, so a worker that wakes up late cannot touch a newer job.
// Workers spin briefly between jobs (a decode step issues hundreds of small jobs), then sleep.
#include "CKernels.h"
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>

#define RK_MAX_THREADS 64
#define RK_SPIN_ITERATIONS 100000

static int pool_threads = 1;
static atomic_int started = 0;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static atomic_uint_fast64_t generation = 0;         // the current job's number
static atomic_int sleepers = 0;                     // workers blocked on the condition variable
// owner[p] == 2*G: partition p of job G is open; 2*G+1: claimed. done[p] == G: finished.
static atomic_uint_fast64_t owner[RK_MAX_THREADS];
static atomic_uint_fast64_t done[RK_MAX_THREADS];
static rk_task_fn job_fn;
static void *job_context;

static inline void cpu_relax(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}

static inline int claim(int p, uint64_t g) {
    uint_fast64_t open = 2 * g;
    return atomic_compare_exchange_strong(&owner[p], &open, 2 * g + 1);
}

static void *worker(void *arg) {
    int index = (int)(intptr_t)arg;
    uint64_t seen = 0;
    for (;;) {
        int spins = 0;
        while (atomic_load(&generation) == seen) {
            if (++spins < RK_SPIN_ITERATIONS) {
                cpu_relax();
                // On a shared machine a spinning worker can hold the core the job's owner needs: yield now and then.
                if ((spins & 1023) == 0) sched_yield();
                continue;
            }
            // seq_cst with rk_pool_run: either it sees us as a sleeper and signals under the lock,
            // or we see its new generation before waiting.
            pthread_mutex_lock(&lock);
            atomic_fetch_add(&sleepers, 1);
            while (atomic_load(&generation) == seen) pthread_cond_wait(&wake, &lock);
            atomic_fetch_sub(&sleepers, 1);
            pthread_mutex_unlock(&lock);
        }
        seen = atomic_load(&generation);
        if (claim(index, seen)) {
            job_fn(job_context, index, pool_threads);   // the caller waits for done[index], so these stay valid
            atomic_store(&done[index], seen);
        }
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
    const int n = pool_threads;
    if (n == 1) { fn(context, 0, 1); return; }
    const uint64_t g = atomic_load(&generation) + 1;
    job_fn = fn;
    job_context = context;
    for (int p = 0; p < n; p++) atomic_store(&owner[p], 2 * g);
    atomic_store(&generation, g);
    if (atomic_load(&sleepers) > 0) {
        pthread_mutex_lock(&lock);
        pthread_cond_broadcast(&wake);
        pthread_mutex_unlock(&lock);
    }
    // Our own partition first, then any partition still unclaimed.
    claim(0, g);
    fn(context, 0, n);
    int mine[RK_MAX_THREADS] = {0};
    for (int p = 1; p < n; p++) {
        if (claim(p, g)) { fn(context, p, n); mine[p] = 1; }
    }
    for (int p = 1; p < n; p++) {
        if (!mine[p]) {
            int spins = 0;
            while (atomic_load(&done[p]) != g) {
                cpu_relax();
                if ((++spins & 255) == 0) sched_yield();   // the worker holding p may be descheduled
            }
        }
    }
}

// ---- Shared counters for jobs whose threads claim tasks one by one ----

int rk_counter_next(int32_t *counter) { return __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED); }

void rk_progress_add(int32_t *progress) { __atomic_fetch_add(progress, 1, __ATOMIC_RELEASE); }

void rk_progress_wait(const int32_t *progress, int32_t target) {
    int spins = 0;
    while (__atomic_load_n(progress, __ATOMIC_ACQUIRE) < target) {
        cpu_relax();
        if ((++spins & 255) == 0) sched_yield();   // the thread running the awaited task may be descheduled
    }
}
