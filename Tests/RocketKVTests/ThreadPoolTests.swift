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
        let seen = UnsafeMutablePointer<Int>.allocate(capacity: 3)
        defer { seen.deallocate() }
        three.install { ThreadPool.run { index, _ in seen[index] = ThreadPool.threadCount } }
        XCTAssertEqual(Array(UnsafeBufferPointer(start: seen, count: 3)), [3, 3, 3])
    }

    /// A job started inside a job of the same pool (busy) runs all its partitions on the calling thread.
    func testNestedJobRunsEveryPartition() {
        let pool = ThreadPool(threads: 3)
        let hits = UnsafeMutablePointer<Int32>.allocate(capacity: 9)
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

/// A test case whose tests run on a pool of two threads, so that their work is split between threads.
class TwoThreadTestCase: XCTestCase {
    static let twoThreads = ThreadPool(threads: 2)
    override func invokeTest() { Self.twoThreads.install { super.invokeTest() } }
}

/// Whether `split(body)` hands `body` ranges that cover `0..<count` exactly once.
func everyIndexOnce(_ count: Int, _ split: (_ body: (Range<Int>) -> Void) -> Void) -> Bool {
    let hits = UnsafeMutablePointer<Int32>.allocate(capacity: max(count, 1))
    defer { hits.deallocate() }
    hits.initialize(repeating: 0, count: max(count, 1))
    split { range in for i in range { hits[i] += 1 } }
    return (0..<count).allSatisfy { hits[$0] == 1 }
}
