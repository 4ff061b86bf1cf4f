import Foundation

/// Where decode time goes (`rocketkv bench --breakdown`): wall time spent in weight matmuls and in the KV
/// method's attention on the thread that runs the forward pass, and, inside every thread-pool job, how long the
/// workers sat idle waiting for the slowest one (synchronisation). Everything else in a step (norms, RoPE,
/// embedding, logits' argmax) is the remainder. Inside attention, the thread-time of HSA's steps on every worker
/// is split into selection and sparse attention. Off by default; when off, each measured call reads one flag.
///
/// Only one forward pass may run while it is enabled (the bench's child process); the phase counters are not
/// locked (the work counters, added from every worker, are).
public enum StepProfile {
    /// Per-step phases measured on the calling thread.
    public enum Phase: Int, CaseIterable, Sendable {
        /// `matmul` of weights (attention projections, feed-forward, output).
        case matmul
        /// The KV method's prefill or decode of one layer (for RocketKV: HSA selection and sparse attention).
        case attention
    }

    /// Work measured as thread-time on whichever worker runs it (summed over threads).
    public enum Work: Int, CaseIterable, Sendable {
        /// HSA's selection: the decode token's page bounds, the query's dimensions, page scores, their softmax,
        /// the top pages and the gather of their rows.
        case hsaSelection
        /// HSA's exact attention over the gathered rows.
        case hsaAttention
    }

    public struct Totals: Sendable, Equatable {
        /// Wall nanoseconds per phase.
        public var phaseNanoseconds = [UInt64](repeating: 0, count: Phase.allCases.count)
        /// Pool jobs (fork-joins).
        public var jobs = 0
        /// Σ over jobs of threads × job wall time, and Σ of the workers' busy time inside them.
        public var jobThreadNanoseconds: UInt64 = 0, jobBusyNanoseconds: UInt64 = 0
        /// Thread nanoseconds per kind of work.
        public var workThreadNanoseconds = [UInt64](repeating: 0, count: Work.allCases.count)

        /// Thread-nanoseconds the workers waited inside jobs.
        public var idleNanoseconds: UInt64 { jobThreadNanoseconds &- min(jobThreadNanoseconds, jobBusyNanoseconds) }
        public func nanoseconds(_ phase: Phase) -> UInt64 { phaseNanoseconds[phase.rawValue] }
        public func threadNanoseconds(_ work: Work) -> UInt64 { workThreadNanoseconds[work.rawValue] }
    }

    nonisolated(unsafe) public static var enabled = false
    nonisolated(unsafe) public private(set) static var totals = Totals()
    /// Nesting depth of `measure`, so that a phase inside another is counted once (in the outer).
    nonisolated(unsafe) private static var depth = 0

    public static func reset() { totals = Totals() }

    @inline(__always)
    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    /// Runs `body`, adding its wall time to `phase` when profiling (and not already inside a measured phase).
    @inline(__always)
    public static func measure<T>(_ phase: Phase, _ body: () throws -> T) rethrows -> T {
        guard enabled, depth == 0 else { return try body() }
        depth = 1
        let start = now()
        defer {
            depth = 0
            totals.phaseNanoseconds[phase.rawValue] += now() - start
        }
        return try body()
    }

    private static let workLock = NSLock()

    /// Runs `body` on any thread, adding its duration to `work`'s thread-time when profiling.
    @inline(__always)
    public static func measure<T>(work: Work, _ body: () throws -> T) rethrows -> T {
        guard enabled else { return try body() }
        let start = now()
        defer {
            let elapsed = now() - start
            workLock.withLock { totals.workThreadNanoseconds[work.rawValue] += elapsed }
        }
        return try body()
    }

    /// Records one pool job: its wall time over `threads` workers and their summed busy time.
    static func recordJob(threads: Int, wall: UInt64, busy: UInt64) {
        // Pools side by side (engines on different threads) record at once.
        workLock.withLock {
            totals.jobs += 1
            totals.jobThreadNanoseconds += UInt64(threads) * wall
            totals.jobBusyNanoseconds += busy
        }
    }
}
