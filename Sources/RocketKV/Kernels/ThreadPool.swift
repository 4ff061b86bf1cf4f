import CKernels

/// Fork-join parallelism over a persistent pool of threads (see `Sources/CKernels/pool.c`).
public enum ThreadPool {
    /// Starts the pool with `threads` threads in all, the calling thread included. Only the first call counts.
    public static func start(threads: Int) { rk_pool_start(Int32(max(1, threads))) }

    /// Number of threads jobs are split over.
    public static var threadCount: Int { Int(rk_pool_threads()) }

    /// Runs `body(index, count)` once on every thread of the pool and waits for all of them.
    public static func run(_ body: (_ index: Int, _ count: Int) -> Void) {
        withoutActuallyEscaping(body) { escaping in
            var job = escaping
            withUnsafeMutablePointer(to: &job) { pointer in
                rk_pool_run({ context, index, count in
                    context!.assumingMemoryBound(to: ((Int, Int) -> Void).self).pointee(Int(index), Int(count))
                }, pointer)
            }
        }
    }

    /// Splits `0..<count` into one contiguous range per thread (sizes a multiple of `granularity`).
    public static func parallelFor(_ count: Int, granularity: Int = 1, _ body: (Range<Int>) -> Void) {
        if count <= granularity || threadCount == 1 { body(0..<count); return }
        run { index, threads in
            let units = (count + granularity - 1) / granularity
            let start = min(count, units * index / threads * granularity)
            let end = min(count, units * (index + 1) / threads * granularity)
            if start < end { body(start..<end) }
        }
    }
}
