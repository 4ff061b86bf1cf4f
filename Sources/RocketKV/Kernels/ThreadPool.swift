import CKernels
import Foundation

/// Fork-join parallelism over a persistent pool of threads (see `Sources/CKernels/pool.c`).
///
/// Each pool owns its threads, so two engines (two sequences of a server, two tests) on different threads
/// compute side by side without sharing anything. The kernels do not take a pool: they call the static
/// members (`ThreadPool.run`, `ThreadPool.parallelFor`, `ThreadPool.threadCount`), which use the calling
/// thread's *current* pool, as Rayon's `ThreadPool::install` does:
/// - inside `pool.install { ... }` the current pool is `pool` (installs nest; the previous one comes back);
/// - on a pool's worker threads it is that pool, so a job's own calls stay on it;
/// - elsewhere it is `ThreadPool.global`, the fallback (like Rayon's global pool), created on first use.
///
/// A pool runs one job at a time. A job started while its pool is busy (by another thread that shares the
/// pool, or nested inside one of its jobs) runs every partition on the calling thread instead: correct, not
/// parallel. Give each concurrent user its own pool.
///
/// A job's body runs on several threads at once, and every call returns once all of them are done: the body is
/// `@Sendable` (so the compiler checks what it captures) but need not escape. Buffers it writes are captured as
/// pointers (`nonisolated(unsafe)` where the compiler cannot see that the tasks write disjoint parts of them).
// @unchecked: `handle` is a `let`, and the C pool takes jobs from any thread (a busy pool runs them on the caller).
public final class ThreadPool: @unchecked Sendable {
    let handle: OpaquePointer

    /// A pool that splits jobs over `threads` threads in all: the caller of a job and `threads - 1` workers.
    public init(threads: Int) {
        handle = rk_pool_create(Int32(max(1, threads)))
    }

    /// Stops and joins the workers (a pool in use cannot be released: `install` and a job keep it alive).
    deinit { rk_pool_destroy(handle) }

    /// Number of threads jobs are split over.
    public var threadCount: Int { Int(rk_pool_threads(handle)) }

    /// Runs `body` with this pool as the calling thread's current pool, then restores the previous one.
    public func install<R>(_ body: () throws -> R) rethrows -> R { try Self.install(self, body) }

    /// `pool.install(body)`, or just `body()` (on the current pool) when `pool` is nil.
    static func install<R>(_ pool: ThreadPool?, _ body: () throws -> R) rethrows -> R {
        guard let pool else { return try body() }
        let previous = rk_pool_set_current(pool.handle)
        defer { rk_pool_set_current(previous) }
        return try withExtendedLifetime(pool) { try body() }
    }

    /// Runs `body(index, count)` once for every thread index of the pool and waits for all of them.
    public func run(_ body: @Sendable (_ index: Int, _ count: Int) -> Void) { Self.run(on: handle, body) }

    /// Splits `0..<count` into one contiguous range per thread (sizes a multiple of `granularity`).
    public func parallelFor(_ count: Int, granularity: Int = 1, _ body: @Sendable (Range<Int>) -> Void) {
        Self.parallelFor(on: handle, count, granularity: granularity, body)
    }

    /// Runs `groups` independent pipelines of phases on the pool: phase `p` of each group has `phases[p]` tasks,
    /// and `body(group, phase, index)` runs every task once. A task of phase `p` of group `g` starts once every
    /// task of the phases before `p` of group `g` has finished; groups never wait for each other.
    ///
    /// The threads claim tasks one by one in a single order: the tasks of phase 0 of every group (group by
    /// group), then those of phase 1, and so on. So the work spreads evenly (no thread idles while an unclaimed
    /// task could run), and a task waits only for tasks claimed before it, which are running or done.
    public func runPhases(groups: Int, phases: [Int], _ body: @Sendable (_ group: Int, _ phase: Int, _ index: Int) -> Void) {
        Self.runPhases(on: handle, groups: groups, phases: phases, body)
    }

    // MARK: The current pool

    /// The fallback pool, used by threads that have no pool installed: as many threads as active processors.
    public static let global = ThreadPool(threads: ProcessInfo.processInfo.activeProcessorCount)

    /// The calling thread's current pool.
    static var current: OpaquePointer { rk_pool_current() ?? global.handle }

    /// Number of threads the current pool splits jobs over.
    public static var threadCount: Int { Int(rk_pool_threads(current)) }

    /// `run` on the current pool.
    public static func run(_ body: @Sendable (_ index: Int, _ count: Int) -> Void) { run(on: current, body) }

    /// `parallelFor` on the current pool.
    public static func parallelFor(_ count: Int, granularity: Int = 1, _ body: @Sendable (Range<Int>) -> Void) {
        parallelFor(on: current, count, granularity: granularity, body)
    }

    /// `runPhases` on the current pool.
    public static func runPhases(groups: Int, phases: [Int], _ body: @Sendable (_ group: Int, _ phase: Int, _ index: Int) -> Void) {
        runPhases(on: current, groups: groups, phases: phases, body)
    }

    // MARK: Jobs on a pool

    /// Runs `body(index, threads)` on every worker. With `StepProfile` on, records the job's wall time and each
    /// worker's busy time: the whole call of `body`, or what `body` adds to `busy[index]` itself when given
    /// `countsBusy` (a job whose workers also wait inside it).
    private static func run(on pool: OpaquePointer, countsBusy: Bool = false,
                            _ body: @Sendable (_ index: Int, _ count: Int, _ busy: UnsafeMutablePointer<UInt64>?) -> Void) {
        guard StepProfile.enabled else { runJob(on: pool) { body($0, $1, nil) }; return }
        let threads = Int(rk_pool_threads(pool))
        nonisolated(unsafe) let busy = UnsafeMutablePointer<UInt64>.allocate(capacity: threads)
        busy.initialize(repeating: 0, count: threads)
        defer { busy.deallocate() }
        let start = StepProfile.now()
        let spread = runJob(on: pool) { index, count in
            if countsBusy { body(index, count, busy); return }
            let begin = StepProfile.now()
            body(index, count, busy)
            busy[index] = StepProfile.now() - begin
        }
        // A job that ran on the calling thread alone (nested in another) is part of that job's busy time.
        if spread { StepProfile.recordJob(threads: threads, wall: StepProfile.now() - start, busy: (0..<threads).reduce(0) { $0 + busy[$1] }) }
    }

    private static func run(on pool: OpaquePointer, _ body: @Sendable (_ index: Int, _ count: Int) -> Void) {
        run(on: pool) { index, count, _ in body(index, count) }
    }

    /// Whether the job was spread over the pool's threads (`rk_pool_run`).
    @discardableResult
    private static func runJob(on pool: OpaquePointer, _ body: @Sendable (_ index: Int, _ count: Int) -> Void) -> Bool {
        withoutActuallyEscaping(body) { escaping in
            var job = escaping
            return withUnsafeMutablePointer(to: &job) { pointer in
                rk_pool_run(pool, { context, index, count in
                    context!.assumingMemoryBound(to: (@Sendable (Int, Int) -> Void).self).pointee(Int(index), Int(count))
                }, pointer) != 0
            }
        }
    }

    private static func parallelFor(on pool: OpaquePointer, _ count: Int, granularity: Int, _ body: @Sendable (Range<Int>) -> Void) {
        if count <= granularity || rk_pool_threads(pool) == 1 { body(0..<count); return }
        run(on: pool) { index, threads in
            let units = (count + granularity - 1) / granularity
            let start = min(count, units * index / threads * granularity)
            let end = min(count, units * (index + 1) / threads * granularity)
            if start < end { body(start..<end) }
        }
    }

    private static func runPhases(on pool: OpaquePointer, groups: Int, phases: [Int],
                                  _ body: @Sendable (_ group: Int, _ phase: Int, _ index: Int) -> Void) {
        let tasks = groups * phases.reduce(0, +)
        guard tasks > 0 else { return }
        // [next task to claim][tasks finished in each group], on cache lines of their own: on the caller's stack they
        // would share a line with its locals, which every atomic of the other threads would then pull away.
        let bytes = (1 + groups) * MemoryLayout<Int32>.size
        let counters = UnsafeMutableRawPointer.allocate(byteCount: (bytes + 63) / 64 * 64, alignment: 64)
        defer { counters.deallocate() }
        do {
            // Shared by the tasks through atomic C operations only (rk_counter_next, rk_progress_*).
            nonisolated(unsafe) let next = counters.bindMemory(to: Int32.self, capacity: 1 + groups), finished = next + 1
            next.initialize(repeating: 0, count: 1 + groups)
            run(on: pool, countsBusy: true) { index, _, busy in
                while true {
                    var task = Int(rk_counter_next(next))
                    if task >= tasks { break }
                    // Task numbers run phase by phase, group by group within a phase.
                    var phase = 0, earlier = 0
                    while task >= groups * phases[phase] {
                        task -= groups * phases[phase]
                        earlier += phases[phase]
                        phase += 1
                    }
                    let group = task / phases[phase]
                    rk_progress_wait(finished + group, Int32(earlier))
                    let begin = busy == nil ? 0 : StepProfile.now()
                    body(group, phase, task % phases[phase])
                    if let busy { busy[index] += StepProfile.now() - begin }
                    rk_progress_add(finished + group)
                }
            }
        }
    }
}
