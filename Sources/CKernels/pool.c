// Persistent thread pools for fork-join parallelism over a fixed number of partitions.
//
// A job has one partition per thread. The calling thread runs partition 0, then claims every partition
// no worker has started yet and runs it too; it waits only for partitions a worker really claimed. So a
// worker that is descheduled (the machine is shared) never stalls the job: the caller does its share.
// Claims carry the job's generation, so a worker that wakes up late cannot touch a newer job.
// Workers spin briefly between jobs (a decode step issues hundreds of small jobs), then sleep.
//
// Every pool holds all of its state, so pools used by different threads never interfere. One pool runs one
// job at a time: a job started while it is busy (from another thread, or nested inside one of its jobs)
// runs all of its partitions on the calling thread instead.
#include "CKernels.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>

#define RK_MAX_THREADS 64
#define RK_SPIN_ITERATIONS 100000

struct rk_pool;

struct rk_worker {
    struct rk_pool *pool;
    int index;
    pthread_t thread;
};

struct rk_pool {
    int threads;                                    // partitions per job, the calling thread included
    atomic_int busy;                                // a job is running
    atomic_int stopping;                            // rk_pool_destroy: workers leave
    pthread_mutex_t lock;
    pthread_cond_t wake;
    atomic_uint_fast64_t generation;                // the current job's number
    atomic_int sleepers;                            // workers blocked on the condition variable
    // owner[p] == 2*G: partition p of job G is open; 2*G+1: claimed. done[p] == G: finished.
    atomic_uint_fast64_t owner[RK_MAX_THREADS];
    atomic_uint_fast64_t done[RK_MAX_THREADS];
    rk_task_fn job_fn;
    void *job_context;
    struct rk_worker workers[RK_MAX_THREADS];       // [1, threads) are running
};

static _Thread_local rk_pool *current_pool;

rk_pool *rk_pool_current(void) { return current_pool; }

rk_pool *rk_pool_set_current(rk_pool *pool) {
    rk_pool *previous = current_pool;
    current_pool = pool;
    return previous;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}

static inline int claim(rk_pool *pool, int p, uint64_t g) {
    uint_fast64_t open = 2 * g;
    return atomic_compare_exchange_strong(&pool->owner[p], &open, 2 * g + 1);
}

static void *worker(void *arg) {
    struct rk_worker *self = arg;
    rk_pool *pool = self->pool;
    const int index = self->index;
    current_pool = pool;   // what a job's own calls to the pool reach
    uint64_t seen = 0;
    for (;;) {
        int spins = 0;
        while (atomic_load(&pool->generation) == seen) {
            if (++spins < RK_SPIN_ITERATIONS) {
                cpu_relax();
                // On a shared machine a spinning worker can hold the core the job's owner needs: yield now and then.
                if ((spins & 1023) == 0) sched_yield();
                continue;
            }
            // seq_cst with rk_pool_run: either it sees us as a sleeper and signals under the lock,
            // or we see its new generation before waiting.
            pthread_mutex_lock(&pool->lock);
            atomic_fetch_add(&pool->sleepers, 1);
            while (atomic_load(&pool->generation) == seen) pthread_cond_wait(&pool->wake, &pool->lock);
            atomic_fetch_sub(&pool->sleepers, 1);
            pthread_mutex_unlock(&pool->lock);
        }
        if (atomic_load(&pool->stopping)) return NULL;
        seen = atomic_load(&pool->generation);
        if (claim(pool, index, seen)) {
            pool->job_fn(pool->job_context, index, pool->threads);   // the caller waits for done[index], so these stay valid
            atomic_store(&pool->done[index], seen);
        }
    }
}

rk_pool *rk_pool_create(int threads) {
    if (threads < 1) threads = 1;
    if (threads > RK_MAX_THREADS) threads = RK_MAX_THREADS;
    rk_pool *pool;
    if (posix_memalign((void **)&pool, 64, sizeof(rk_pool)) != 0) return NULL;
    memset(pool, 0, sizeof(rk_pool));
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pool->threads = 1;
    for (int i = 1; i < threads; i++) {
        pool->workers[i].pool = pool;
        pool->workers[i].index = i;
        // A pool with fewer workers than asked (the system refused a thread) still runs every job.
        if (pthread_create(&pool->workers[i].thread, NULL, worker, &pool->workers[i]) != 0) break;
        pool->threads = i + 1;
    }
    return pool;
}

void rk_pool_destroy(rk_pool *pool) {
    if (!pool) return;
    // Only between jobs: no partition is claimed, so every worker is spinning or asleep on the generation.
    atomic_store(&pool->stopping, 1);
    pthread_mutex_lock(&pool->lock);
    atomic_fetch_add(&pool->generation, 1);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    for (int i = 1; i < pool->threads; i++) pthread_join(pool->workers[i].thread, NULL);
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->lock);
    if (current_pool == pool) current_pool = NULL;
    free(pool);
}

int rk_pool_threads(const rk_pool *pool) { return pool->threads; }

int rk_pool_run(rk_pool *pool, rk_task_fn fn, void *context) {
    const int n = pool->threads;
    if (n == 1 || atomic_exchange(&pool->busy, 1)) {
        for (int p = 0; p < n; p++) fn(context, p, n);
        return 0;
    }
    const uint64_t g = atomic_load(&pool->generation) + 1;
    pool->job_fn = fn;
    pool->job_context = context;
    for (int p = 0; p < n; p++) atomic_store(&pool->owner[p], 2 * g);
    atomic_store(&pool->generation, g);
    if (atomic_load(&pool->sleepers) > 0) {
        pthread_mutex_lock(&pool->lock);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->lock);
    }
    // Our own partition first, then any partition still unclaimed.
    claim(pool, 0, g);
    fn(context, 0, n);
    int mine[RK_MAX_THREADS] = {0};
    for (int p = 1; p < n; p++) {
        if (claim(pool, p, g)) { fn(context, p, n); mine[p] = 1; }
    }
    for (int p = 1; p < n; p++) {
        if (!mine[p]) {
            int spins = 0;
            while (atomic_load(&pool->done[p]) != g) {
                cpu_relax();
                if ((++spins & 255) == 0) sched_yield();   // the worker holding p may be descheduled
            }
        }
    }
    atomic_store(&pool->busy, 0);
    return 1;
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
