import Foundation
import RocketKV
import XCTest

/// The §4.5 conformance vector (shared with the HSA tests).
enum ConformanceVector {
    static let d = 8, G = 2
    static func key(_ j: Int) -> [Float] {
        (0..<d).map { i in
            let x: Double = 0.013 * Double(j * j) + 0.7 * Double(i) + 0.11 * Double(j * i)
            return Float(sin(x))
        }
    }
    static func value(_ j: Int) -> [Float] { (0..<d).map { i in Float(cos(0.23 * Double(j) + 0.9 * Double(i))) } }
    static func query(_ h: Int, _ j: Int) -> [Float] {
        (0..<d).map { i in
            let jj: Double = 0.017 * Double(j * j), ii: Double = 0.6 * Double(i), hh: Double = 1.3 * Double(h)
            let ji: Double = 0.05 * Double(j * i), hi: Double = 0.4 * Double(h * i)
            let x: Double = jj + ii + hh + ji + hi
            return Float(cos(x))
        }
    }
    /// `[rows][G][d]` queries of tokens `range`.
    static func windowQueries(_ range: Range<Int>) -> [Float] { range.flatMap { j in (0..<G).flatMap { h in query(h, j) } } }
    static var scale: Float { 1 / Float(d).squareRoot() }
}

final class RocketStage1Tests: XCTestCase {
    typealias V = ConformanceVector

    func keptSlots(n: Int, window: Int, kernel: Int, budget: Int) -> [Int] {
        let keys = (0..<n).flatMap(V.key)
        let q = V.windowQueries((n - window)..<n)
        return keys.withUnsafeBufferPointer { k in
            q.withUnsafeBufferPointer { q in
                SnapKVScoring.keptSlots(windowQueries: q.baseAddress!, windowRows: window, groupSize: V.G, keys: .f32(k.baseAddress!),
                                        count: n, headDim: V.d, scale: V.scale, promptBudget: budget, kernel: kernel).slots
            }
        }
    }

    func testConformanceVotesAndSelection() {
        let keys = (0..<48).flatMap(V.key)
        let q = V.windowQueries(40..<48)
        let votes = keys.withUnsafeBufferPointer { k in
            q.withUnsafeBufferPointer { q in
                SnapKVScoring.votes(windowQueries: q.baseAddress!, windowRows: 8, groupSize: 2, keys: .f32(k.baseAddress!),
                                   count: 48, headDim: 8, scale: V.scale)
            }
        }
        XCTAssertEqual(votes.count, 40)
        let expected: [Float] = [0.390914, 0.406976, 0.397154, 0.671331, 0.682624, 0.308615, 0.596963, 0.707785, 0.372293,
                                 0.457652, 0.406450, 0.402347, 0.350922]
        for (i, e) in expected.enumerated() { XCTAssertEqual(votes[17 + i], e, accuracy: 1e-5, "vote \(17 + i)") }
        let pooled = SnapKVScoring.maxPool(votes, kernel: 7)
        let sorted = pooled.sorted(by: >)
        XCTAssertEqual(sorted[12], 0.457652, accuracy: 1e-5)
        XCTAssertEqual(sorted[13], 0.406976, accuracy: 1e-5)
        XCTAssertEqual(keptSlots(n: 48, window: 8, kernel: 7, budget: 21), Array(17...29) + Array(40...47))
    }

    func testKernel63TiesTakeLowerPositions() {
        // §16.1: with κ = 63 all 40 pooled values are equal: keep 0…12 then the window.
        let keys = (0..<48).flatMap(V.key)
        let q = V.windowQueries(40..<48)
        let votes = keys.withUnsafeBufferPointer { k in
            q.withUnsafeBufferPointer { q in
                SnapKVScoring.votes(windowQueries: q.baseAddress!, windowRows: 8, groupSize: 2, keys: .f32(k.baseAddress!),
                                   count: 48, headDim: 8, scale: V.scale)
            }
        }
        XCTAssertEqual(Set(SnapKVScoring.maxPool(votes, kernel: 63)).count, 1)
        XCTAssertEqual(keptSlots(n: 48, window: 8, kernel: 63, budget: 21), Array(0...12) + Array(40...47))
    }

    func testNothingEvictedWithinBudget() {
        XCTAssertEqual(keptSlots(n: 48, window: 8, kernel: 63, budget: 48), Array(0..<48))
        XCTAssertEqual(keptSlots(n: 48, window: 8, kernel: 63, budget: 100), Array(0..<48))
    }

    func testMaxPoolMatchesNaive() {
        var rng = Xoshiro256StarStar(seed: 42)
        for n in [1, 2, 5, 40, 300] {
            for kernel in [1, 3, 7, 63] {
                let v = (0..<n).map { _ in Float.random(in: 0...1, using: &rng) }
                let naive = (0..<n).map { j in v[max(0, j - kernel / 2)...min(n - 1, j + kernel / 2)].max()! }
                XCTAssertEqual(SnapKVScoring.maxPool(v, kernel: kernel), naive)
            }
        }
    }

    /// Brute force in Double: masked softmax per head and window row, votes, pooling, tie rule, ascending.
    func testAgainstBruteForceOnRandomTensors() {
        var rng = Xoshiro256StarStar(seed: 42)
        for trial in 0..<12 {
            let G = [1, 2, 3][trial % 3], d = [16, 64][trial % 2], n = Int.random(in: 60...400, using: &rng)
            let w = [4, 16, 32][trial % 3], kernel = [7, 63, 15][(trial / 3) % 3]
            let budget = Int.random(in: (w + 1)...(n - 1), using: &rng)
            let keys = (0..<(n * d)).map { _ in Float.random(in: -2...2, using: &rng) }
            let q = (0..<(w * G * d)).map { _ in Float.random(in: -2...2, using: &rng) }
            let scale = 1 / Double(d).squareRoot()
            // Reference.
            let prefix = n - w
            var votes = [Double](repeating: 0, count: prefix)
            for a in 0..<w {
                for h in 0..<G {
                    var z = [Double](repeating: -.infinity, count: n)
                    for j in 0...(prefix + a) {
                        var s = 0.0
                        for i in 0..<d { s += Double(q[(a * G + h) * d + i]) * Double(keys[j * d + i]) }
                        z[j] = s * scale
                    }
                    let m = z.max()!
                    let e = z.map { $0 == -.infinity ? 0 : exp($0 - m) }
                    let total = e.reduce(0, +)
                    for j in 0..<prefix { votes[j] += e[j] / total }
                }
            }
            let pooled = (0..<prefix).map { j in votes[max(0, j - kernel / 2)...min(prefix - 1, j + kernel / 2)].max()! }
            let order = pooled.indices.sorted { pooled[$0] != pooled[$1] ? pooled[$0] > pooled[$1] : $0 < $1 }
            let expected = order.prefix(budget - w).sorted() + Array(prefix..<n)
            let ours = keys.withUnsafeBufferPointer { k in
                q.withUnsafeBufferPointer { qb in
                    SnapKVScoring.keptSlots(windowQueries: qb.baseAddress!, windowRows: w, groupSize: G, keys: .f32(k.baseAddress!),
                                            count: n, headDim: d, scale: Float(scale), promptBudget: budget, kernel: kernel).slots
                }
            }
            XCTAssertEqual(ours, expected, "trial \(trial): G=\(G) d=\(d) n=\(n) w=\(w) κ=\(kernel) B_p=\(budget)")
        }
    }
}
