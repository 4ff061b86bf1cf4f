import CKernels
import Foundation
import RocketKV
import XCTest

final class ThreadPoolTests: XCTestCase {
    /// Every index of `0..<count` once, for pools of 1, 2 and 4 threads, called on the pool and through the
    /// static members with the pool installed.
    func testParallelForRunsEveryIndexOnce() {
        for threads in [1, 2, 4] {
            let pool = ThreadPool(threads: threads)
            XCTAssertEqual(pool.threadCount, threads)
            for count in [0, 1, 5, 1000] {
                for granularity in [1, 8] {
                    XCTAssertTrue(everyIndexOnce(count) { pool.parallelFor(count, granularity: granularity, $0) },
                                  "\(threads) threads, count \(count)")
                    XCTAssertTrue(everyIndexOnce(count) { body in pool.install { ThreadPool.parallelFor(count, granularity: granularity, body) } },
                                  "installed, \(threads) threads, count \(count)")
                }
            }
        }
    }

    /// `StepProfile` (bench --breakdown): a job's wall time over its workers and their busy time, so a worker that
    /// waits for a slower one shows as idle; phases nested in a measured phase count once, in the outer one.
    func testStepProfileCountsJobsIdleTimeAndPhases() {
        StepProfile.reset()
        StepProfile.enabled = true
        defer { StepProfile.enabled = false; StepProfile.reset() }
        let pool = ThreadPool(threads: 2)
        pool.parallelFor(2) { range in if range.contains(0) { usleep(20_000) } }   // one worker busy 20 ms, the other not
        pool.runPhases(groups: 1, phases: [1, 1]) { _, phase, _ in if phase == 1 { usleep(5_000) } }
        let totals = StepProfile.totals
        XCTAssertEqual(totals.jobs, 2)
        XCTAssertGreaterThanOrEqual(totals.jobBusyNanoseconds, 25_000_000)
        XCTAssertGreaterThanOrEqual(totals.idleNanoseconds, 15_000_000, "the worker without work waited for the one sleeping")
        XCTAssertLessThanOrEqual(totals.idleNanoseconds, totals.jobThreadNanoseconds)
        StepProfile.measure(.attention) { StepProfile.measure(.matmul) { usleep(2_000) } }
        XCTAssertGreaterThanOrEqual(StepProfile.totals.nanoseconds(.attention), 2_000_000)
        XCTAssertEqual(StepProfile.totals.nanoseconds(.matmul), 0)
        pool.parallelFor(2) { _ in StepProfile.measure(work: .hsaSelection) { _ = usleep(3_000) } }
        XCTAssertGreaterThanOrEqual(StepProfile.totals.threadNanoseconds(.hsaSelection), 6_000_000, "work is thread-time, summed over workers")
        XCTAssertEqual(StepProfile.totals.threadNanoseconds(.hsaAttention), 0)
        // Jobs nested in a job run on the thread that started them: part of the outer job's busy time, not jobs.
        let before = StepProfile.totals
        // (5 ms per nested partition: recorded as 2-thread jobs of their own, the two nested jobs would add ~20 ms of
        // idle time; a descheduled worker on a loaded 2-core machine adds a few ms, well under the 10 ms bound.)
        pool.install { ThreadPool.parallelFor(2) { _ in ThreadPool.parallelFor(2) { _ in usleep(5_000) } } }
        XCTAssertEqual(StepProfile.totals.jobs, before.jobs + 1, "only the outer job is recorded")
        XCTAssertGreaterThanOrEqual(StepProfile.totals.jobBusyNanoseconds - before.jobBusyNanoseconds, 20_000_000)
        XCTAssertLessThan(StepProfile.totals.idleNanoseconds - before.idleNanoseconds, 10_000_000, "a nested job's serial run is no idle time")
        StepProfile.enabled = false
        pool.parallelFor(2) { _ in }
        XCTAssertEqual(StepProfile.totals.jobs, 4, "nothing is recorded while off")
    }

    /// The static members reach the installed pool (installs nest), a worker's own pool inside a job, and
    /// `ThreadPool.global` elsewhere.
    func testStaticMembersUseTheCurrentPool() {
        let two = ThreadPool(threads: 2), three = ThreadPool(threads: 3)
        XCTAssertEqual(ThreadPool.threadCount, ThreadPool.global.threadCount)
        two.install {
            XCTAssertEqual(ThreadPool.threadCount, 2)
            three.install { XCTAssertEqual(ThreadPool.threadCount, 3) }
            XCTAssertEqual(ThreadPool.threadCount, 2)
        }
        XCTAssertEqual(ThreadPool.threadCount, ThreadPool.global.threadCount)
        nonisolated(unsafe) let seen = UnsafeMutablePointer<Int>.allocate(capacity: 3)   // an element per task
        defer { seen.deallocate() }
        three.install { ThreadPool.run { index, _ in seen[index] = ThreadPool.threadCount } }
        XCTAssertEqual(Array(UnsafeBufferPointer(start: seen, count: 3)), [3, 3, 3])
    }

    /// A job started inside a job of the same pool (busy) runs all its partitions on the calling thread.
    func testNestedJobRunsEveryPartition() {
        let pool = ThreadPool(threads: 3)
        nonisolated(unsafe) let hits = UnsafeMutablePointer<Int32>.allocate(capacity: 9)   // atomic adds only
        defer { hits.deallocate() }
        hits.initialize(repeating: 0, count: 9)
        pool.install {
            ThreadPool.run { outer, count in
                XCTAssertEqual(count, 3)
                ThreadPool.run { inner, _ in rk_progress_add(hits + outer * 3 + inner) }
            }
        }
        XCTAssertEqual(Array(UnsafeBufferPointer(start: hits, count: 9)), [Int32](repeating: 1, count: 9))
    }

    /// Two pools used at the same time from two threads, each with its own jobs, many times: every result
    /// is right. A third thread shares the first pool (whose jobs then run on their callers when it is busy).
    func testPoolsRunSideBySideOnDifferentThreads() {
        let pools = [ThreadPool(threads: 2), ThreadPool(threads: 3)]
        let users = [0, 1, 0]
        final class Failures: @unchecked Sendable { var count = 0, jobs = 0 }
        let failures = users.map { _ in Failures() }
        let start = DispatchSemaphore(value: 0), finished = DispatchGroup()
        for (user, which) in users.enumerated() {
            finished.enter()
            let pool = pools[which], mine = failures[user]
            Thread {
                start.wait()
                for iteration in 0..<2000 {
                    let count = 200 + 37 * (iteration % 11) + user
                    let ok = iteration % 2 == 0
                        ? everyIndexOnce(count) { pool.parallelFor(count, granularity: 1 + iteration % 3, $0) }
                        : everyIndexOnce(count) { body in pool.install { ThreadPool.parallelFor(count, body) } }
                    if !ok { mine.count += 1 }
                    mine.jobs += 1
                }
                finished.leave()
            }.start()
        }
        for _ in users { start.signal() }
        finished.wait()
        XCTAssertEqual(failures.map(\.count), [0, 0, 0])
        XCTAssertEqual(failures.map(\.jobs), [2000, 2000, 2000])
    }

    /// `runPhases` under 1, 2 and 4 threads, many times, with tasks of random lengths: every task runs once and
    /// only after every task of the earlier phases of its group; with one thread, in the claiming order (phase
    /// by phase, group by group).
    func testPhasedTasksRunOnceAfterTheEarlierPhasesOfTheirGroup() {
        let shapes: [(groups: Int, phases: [Int])] = [(3, [1, 2, 3, 1, 3]), (1, [2, 0, 1]), (4, [3]), (2, [1, 1, 1, 1, 1, 1]),
                                                      (5, [0, 2, 1]), (0, [2])]
        for threads in [1, 2, 4] {
            let pool = ThreadPool(threads: threads)
            for (groups, phases) in shapes {
                for repetition in 0..<(threads == 1 ? 3 : 150) {
                    let log = PhaseLog(groups: groups, phases: phases)
                    let task = { @Sendable (group: Int, phase: Int, index: Int) in
                        log.started(group, phase, index)
                        if Int.random(in: 0..<3) == 0 { usleep(UInt32.random(in: 1...40)) }
                        log.finished(group, phase)
                    }
                    if repetition % 2 == 0 {
                        pool.runPhases(groups: groups, phases: phases, task)
                    } else {
                        pool.install { ThreadPool.runPhases(groups: groups, phases: phases, task) }
                    }
                    let label = "\(threads) threads, \(groups) groups, phases \(phases)"
                    XCTAssertEqual(log.violations, [], label)
                    let expected = phases.enumerated().flatMap { phase, count in
                        (0..<groups).flatMap { group in (0..<count).map { [group, phase, $0] } }
                    }
                    if threads == 1 {
                        XCTAssertEqual(log.order, expected, label)
                    } else {
                        XCTAssertEqual(log.order.sorted { $0.lexicographicallyPrecedes($1) },
                                       expected.sorted { $0.lexicographicallyPrecedes($1) }, label)
                    }
                }
            }
        }
    }

    #if os(Linux)
    /// Releasing a pool stops and joins its workers: none are left behind. (A joined thread leaves the
    /// process's thread count a moment later, so the counts are awaited.)
    func testReleasedPoolsLeaveNoThreads() {
        let before = Self.threadsOfProcess(settlingAt: nil)
        for threads in [2, 4, 3] {
            var pool: ThreadPool? = ThreadPool(threads: threads)
            XCTAssertTrue(everyIndexOnce(100) { pool!.parallelFor(100, $0) })
            XCTAssertEqual(Self.threadsOfProcess(settlingAt: before + threads - 1), before + threads - 1)
            pool = nil
            XCTAssertEqual(Self.threadsOfProcess(settlingAt: before), before)
        }
        // Created and released at once, before some of the workers have started.
        for _ in 0..<20 { _ = ThreadPool(threads: 4) }
        XCTAssertEqual(Self.threadsOfProcess(settlingAt: before), before)
    }

    /// The process's thread count once it equals `expected` (or after 5 s), or once it stays put for 50 ms.
    static func threadsOfProcess(settlingAt expected: Int?) -> Int {
        func count() -> Int {
            let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
            let line = status.split(separator: "\n").first { $0.hasPrefix("Threads:") } ?? ""
            return Int(line.dropFirst("Threads:".count).trimmingCharacters(in: .whitespaces)) ?? -1
        }
        var last = count(), steady = 0
        for _ in 0..<5000 {
            if let expected, last == expected { break }
            usleep(1000)
            let now = count()
            steady = now == last ? steady + 1 : 0
            last = now
            if expected == nil && steady >= 50 { break }
        }
        return last
    }
    #endif
}

/// What the tasks of a `runPhases` call did, recorded under a lock: the order they started in ([group, phase,
/// index]), and each start that came before some task of an earlier phase of its group had finished.
final class PhaseLog: @unchecked Sendable {
    let phases: [Int]
    private let lock = NSLock()
    private var finishedTasks: [[Int]]
    private(set) var order: [[Int]] = []
    private(set) var violations: [String] = []

    init(groups: Int, phases: [Int]) {
        self.phases = phases
        finishedTasks = Array(repeating: Array(repeating: 0, count: phases.count), count: groups)
    }

    func started(_ group: Int, _ phase: Int, _ index: Int) {
        lock.lock()
        defer { lock.unlock() }
        order.append([group, phase, index])
        for earlier in 0..<phase where finishedTasks[group][earlier] != phases[earlier] {
            violations.append("group \(group) phase \(phase) task \(index) started before phase \(earlier) finished")
        }
    }

    func finished(_ group: Int, _ phase: Int) {
        lock.lock()
        defer { lock.unlock() }
        finishedTasks[group][phase] += 1
    }
}

/// A test case whose tests run on a pool of two threads, so that their work is split between threads.
class TwoThreadTestCase: XCTestCase {
    static let twoThreads = ThreadPool(threads: 2)
    override func invokeTest() { Self.twoThreads.install { super.invokeTest() } }
}

/// Whether `split(body)` hands `body` ranges that cover `0..<count` exactly once.
func everyIndexOnce(_ count: Int, _ split: (_ body: @Sendable (Range<Int>) -> Void) -> Void) -> Bool {
    // Disjoint ranges write disjoint elements (overlapping ones are what the test catches).
    nonisolated(unsafe) let hits = UnsafeMutablePointer<Int32>.allocate(capacity: max(count, 1))
    defer { hits.deallocate() }
    hits.initialize(repeating: 0, count: max(count, 1))
    split { range in for i in range { hits[i] += 1 } }
    return (0..<count).allSatisfy { hits[$0] == 1 }
}
