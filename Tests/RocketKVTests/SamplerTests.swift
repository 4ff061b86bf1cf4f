import Foundation
import XCTest
import RocketKV

/// Independent, brute-force model of the chain: the probability of every token after
/// top-k → top-p → min-p → temperature (full sort, no shortcuts).
private func referenceDistribution(_ logits: [Float], _ p: SamplingParameters, order sorted: [Int]? = nil) -> [Int: Double] {
    let order = sorted ?? referenceOrder(logits)
    var kept = p.topK > 0 ? Array(order.prefix(p.topK)) : order
    let maxLogit = Double(logits[kept[0]])
    if p.topP < 1 {
        let z = kept.reduce(0.0) { $0 + exp(Double(logits[$1]) - maxLogit) }
        var cumulative = 0.0
        for (i, id) in kept.enumerated() {
            cumulative += exp(Double(logits[id]) - maxLogit) / z
            if cumulative >= Double(p.topP) { kept = Array(kept.prefix(i + 1)); break }
        }
    }
    if p.minP > 0 {
        let pMax = 1.0  // relative to the top token
        kept = kept.filter { exp(Double(logits[$0]) - maxLogit) >= Double(p.minP) * pMax }
    }
    let weights = kept.map { exp((Double(logits[$0]) - maxLogit) / Double(p.temperature)) }
    let total = weights.reduce(0, +)
    return Dictionary(uniqueKeysWithValues: zip(kept, weights.map { $0 / total }))
}

/// Token ids by decreasing logit, ties by increasing id.
private func referenceOrder(_ logits: [Float]) -> [Int] {
    logits.indices.sorted { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
}

/// Logits whose softmax (temperature 1) is exactly proportional to `probabilities`.
private func logits(forProbabilities probabilities: [Double]) -> [Float] {
    probabilities.map { Float(log($0)) }
}

private func draw(_ n: Int, from logits: [Float], _ parameters: SamplingParameters, history: [Int] = []) -> [Int] {
    var sampler = Sampler(parameters)
    return (0..<n).map { _ in
        var copy = logits
        return sampler.sample(logits: &copy, history: history)
    }
}

private func frequencies(_ draws: [Int]) -> [Int: Double] {
    var counts: [Int: Double] = [:]
    for d in draws { counts[d, default: 0] += 1 }
    return counts.mapValues { $0 / Double(draws.count) }
}

private func randomLogits(_ count: Int, scale: Float, rng: inout Xoshiro256StarStar) -> [Float] {
    (0..<count).map { _ in
        // Sum of uniforms: roughly normal, platform independent.
        let u = (0..<4).reduce(0.0) { acc, _ in acc + rng.nextUnitDouble() } - 2
        return Float(u) * scale
    }
}

final class SamplerTests: XCTestCase {
    func testDefaultsAreDocumentedValues() {
        let p = SamplingParameters()
        XCTAssertEqual(p.temperature, 0)
        XCTAssertEqual(p.topK, 40)
        XCTAssertEqual(p.topP, 0.95)
        XCTAssertEqual(p.minP, 0.05)
        XCTAssertEqual(p.repetitionPenalty, 1.0)
        XCTAssertEqual(p.repetitionWindow, 64)
        XCTAssertNil(p.seed)
        XCTAssertEqual(SamplingParameters.greedy, p)
    }

    func testRandomGeneratorMatchesReference() {
        for (seed, outputs) in ReferenceVectors.xoshiro {
            var rng = Xoshiro256StarStar(seed: seed)
            XCTAssertEqual((0..<outputs.count).map { _ in rng.next() }, outputs, "seed \(seed)")
        }
        var rng = Xoshiro256StarStar(seed: 7)
        for _ in 0..<10_000 {
            let u = rng.nextUnitDouble()
            XCTAssertTrue(u >= 0 && u < 1)
        }
    }

    func testGreedyPicksArgmax() {
        var rng = Xoshiro256StarStar(seed: 1)
        var sampler = Sampler(.greedy)
        for _ in 0..<50 {
            var l = randomLogits(1000, scale: 5, rng: &rng)
            let expected = l.indices.max { l[$0] < l[$1] || (l[$0] == l[$1] && $0 > $1) }!
            XCTAssertEqual(sampler.sample(logits: &l, history: []), expected)
        }
        // Ties go to the lower id; NaN is never chosen; -inf everywhere but one.
        var ties: [Float] = [1, 3, 2, 3, 3]
        XCTAssertEqual(sampler.sample(logits: &ties, history: []), 1)
        var withNaN: [Float] = [.nan, 0.5, .nan, 0.7, .nan]
        XCTAssertEqual(sampler.sample(logits: &withNaN, history: []), 3)
        var masked: [Float] = [-.infinity, -.infinity, -1e30, -.infinity]
        XCTAssertEqual(sampler.sample(logits: &masked, history: []), 2)
        var single: [Float] = [42]
        XCTAssertEqual(sampler.sample(logits: &single, history: [0, 0]), 0)
        // Temperature 0 ignores the seed: two samplers agree.
        var a = Sampler(SamplingParameters(temperature: 0, seed: 1))
        var b = Sampler(SamplingParameters(temperature: -1, seed: 2))
        var l1: [Float] = [0.1, 0.4, 0.3], l2 = l1
        XCTAssertEqual(a.sample(logits: &l1, history: []), 1)
        XCTAssertEqual(b.sample(logits: &l2, history: []), 1)
    }

    func testSameSeedSameSequence() {
        var rng = Xoshiro256StarStar(seed: 2)
        let l = randomLogits(5000, scale: 2, rng: &rng)
        let params = SamplingParameters(temperature: 1.0, topK: 0, topP: 1, minP: 0, seed: 1234)
        let first = draw(300, from: l, params)
        XCTAssertEqual(draw(300, from: l, params), first)
        XCTAssertGreaterThan(Set(first).count, 50, "the draws vary")
        // The seed drawn when none is given is reported, and replays the same sequence.
        var unseeded = params
        unseeded.seed = nil
        let sampler = Sampler(unseeded)
        var replay = params
        replay.seed = sampler.seed
        var s1 = sampler, s2 = Sampler(replay)
        for _ in 0..<50 {
            var c1 = l, c2 = l
            XCTAssertEqual(s1.sample(logits: &c1, history: []), s2.sample(logits: &c2, history: []))
        }
    }

    func testDifferentSeedsDiffer() {
        var rng = Xoshiro256StarStar(seed: 3)
        let l = randomLogits(5000, scale: 2, rng: &rng)
        var params = SamplingParameters(temperature: 1.0, topK: 0, topP: 1, minP: 0, seed: 1)
        let a = draw(100, from: l, params)
        params.seed = 2
        let b = draw(100, from: l, params)
        XCTAssertNotEqual(a, b)
        XCTAssertLessThan(zip(a, b).filter { $0 == $1 }.count, 20)
    }

    func testTopKOneEqualsGreedy() {
        var rng = Xoshiro256StarStar(seed: 4)
        var topOne = Sampler(SamplingParameters(temperature: 1.5, topK: 1, topP: 1, minP: 0, seed: 9))
        var greedy = Sampler(.greedy)
        for _ in 0..<100 {
            var l = randomLogits(2000, scale: 0.5, rng: &rng)
            var g = l
            XCTAssertEqual(topOne.sample(logits: &l, history: []), greedy.sample(logits: &g, history: []))
        }
    }

    func testTopKKeepsOnlyTheBest() {
        let l: [Float] = [0.0, 0.1, 0.2, 0.3, 0.35, 0.25, 0.15]
        let draws = draw(5000, from: l, SamplingParameters(temperature: 1, topK: 3, topP: 1, minP: 0, seed: 5))
        XCTAssertEqual(Set(draws), [3, 4, 5])
    }

    func testTopPExcludesTheTail() {
        // Probabilities 0.5, 0.3, 0.15, 0.05: top-p 0.75 keeps the first two (0.5 < 0.75 <= 0.8).
        let l = logits(forProbabilities: [0.15, 0.5, 0.05, 0.3])
        let params = SamplingParameters(temperature: 1, topK: 0, topP: 0.75, minP: 0, seed: 6)
        let f = frequencies(draw(20_000, from: l, params))
        XCTAssertEqual(Set(f.keys), [1, 3])
        XCTAssertEqual(f[1]!, 0.5 / 0.8, accuracy: 0.015)
        XCTAssertEqual(f[3]!, 0.3 / 0.8, accuracy: 0.015)
    }

    func testMinPExcludesUnlikelyTokens() {
        // Relative to the top token (0.4): 0.06 is 0.15x (kept at min-p 0.12), 0.04 is 0.1x (dropped).
        let probabilities = [0.04, 0.3, 0.4, 0.2, 0.06]
        let params = SamplingParameters(temperature: 1, topK: 0, topP: 1, minP: 0.12, seed: 7)
        let f = frequencies(draw(20_000, from: logits(forProbabilities: probabilities), params))
        XCTAssertNil(f[0])
        for id in 1..<5 {
            XCTAssertEqual(f[id] ?? 0, probabilities[id] / 0.96, accuracy: 0.015, "token \(id)")
        }
    }

    func testTemperatureSharpensAndFlattens() {
        let l = logits(forProbabilities: [0.6, 0.4])
        let open = SamplingParameters(temperature: 1, topK: 0, topP: 1, minP: 0, seed: 8)
        var cold = open
        cold.temperature = 0.25  // 0.6^4 : 0.4^4 -> 0.835
        var hot = open
        hot.temperature = 4  // 0.6^0.25 : 0.4^0.25 -> 0.525
        XCTAssertEqual(frequencies(draw(20_000, from: l, cold))[0]!, 0.835, accuracy: 0.015)
        XCTAssertEqual(frequencies(draw(20_000, from: l, hot))[0]!, 0.525, accuracy: 0.015)
    }

    /// The whole chain against the brute-force model, for several parameter sets on small vocabularies:
    /// exactly the allowed tokens appear, with the right frequencies.
    func testChainMatchesBruteForceModel() {
        var rng = Xoshiro256StarStar(seed: 10)
        let parameterSets = [
            SamplingParameters(temperature: 0.8, seed: 1),  // llama.cpp-like defaults
            SamplingParameters(temperature: 1, topK: 5, topP: 0.9, minP: 0.1, seed: 2),
            SamplingParameters(temperature: 1.3, topK: 0, topP: 0.8, minP: 0.05, seed: 3),
            SamplingParameters(temperature: 0.7, topK: 0, topP: 0.7, minP: 0, seed: 4),
            SamplingParameters(temperature: 1, topK: 6, topP: 1, minP: 0.2, seed: 5),
        ]
        for (index, params) in parameterSets.enumerated() {
            for _ in 0..<3 {
                let l = randomLogits(12, scale: 1.5, rng: &rng)
                let expected = referenceDistribution(l, params)
                let observed = frequencies(draw(20_000, from: l, params))
                // Tokens with a meaningful probability must all appear; nothing outside may.
                XCTAssertTrue(Set(observed.keys).isSubset(of: Set(expected.keys)), "set \(index): \(observed.keys.sorted()) vs \(expected.keys.sorted())")
                for (id, probability) in expected {
                    XCTAssertEqual(observed[id] ?? 0, probability, accuracy: 0.015, "set \(index), token \(id)")
                }
            }
        }
    }

    /// On real vocabulary sizes, every path (small top-k heap, large top-k sort, top-k off) only
    /// returns tokens the brute-force model allows, and the default chain is fast.
    func testLargeVocabularies() {
        var rng = Xoshiro256StarStar(seed: 11)
        for vocab in [49152, 262_144] {
            let l = randomLogits(vocab, scale: 4, rng: &rng)
            let order = referenceOrder(l)
            for params in [SamplingParameters(temperature: 0.8, seed: 1),
                           SamplingParameters(temperature: 1, topK: 3000, topP: 0.95, minP: 0.01, seed: 2),
                           SamplingParameters(temperature: 1, topK: 0, topP: 0.9, minP: 0.02, seed: 3),
                           SamplingParameters(temperature: 1, topK: 0, topP: 1, minP: 0.3, seed: 4)] {
                let allowed = referenceDistribution(l, params, order: order)
                XCTAssertGreaterThan(allowed.count, 1)
                let draws = draw(20, from: l, params)
                for d in draws {
                    XCTAssertNotNil(allowed[d], "vocab \(vocab), topK \(params.topK): token \(d) not allowed")
                }
            }
            // The default chain (top-k 40) on the big vocabulary: well under a millisecond or so per token
            // in release; the bound only catches accidental full sorts in debug builds too.
            var sampler = Sampler(SamplingParameters(temperature: 0.8, seed: 5))
            var copy = l
            let start = Date()
            for _ in 0..<50 { _ = copy.withUnsafeMutableBufferPointer { sampler.sample(logits: $0, history: []) } }
            let perToken = Date().timeIntervalSince(start) / 50
            XCTAssertLessThan(perToken, 0.05, "vocab \(vocab): \(perToken * 1000) ms per token")
        }
    }

    func testRepetitionPenaltyChangesTheChoice() {
        var sampler = Sampler(SamplingParameters(repetitionPenalty: 1.1))
        // Positive logit divided: 2.0 / 1.1 = 1.82 < 1.9.
        var l: [Float] = [2.0, 1.9, -1]
        XCTAssertEqual(sampler.sample(logits: &l, history: [0]), 1)
        XCTAssertEqual(l[0], 2.0 / 1.1)
        XCTAssertEqual(l[1], 1.9)
        // Negative logit multiplied: -1.0 * 1.1 = -1.1 < -1.05.
        var negative: [Float] = [-1.0, -1.05]
        XCTAssertEqual(sampler.sample(logits: &negative, history: [0]), 1)
        XCTAssertEqual(negative[0], -1.1)
        // Repeated tokens are penalized once; ids outside the vocabulary are ignored.
        var repeated: [Float] = [2.0, 1.0]
        _ = sampler.sample(logits: &repeated, history: [0, 0, 0, -5, 99])
        XCTAssertEqual(repeated[0], 2.0 / 1.1)
        // Without the penalty, the same case picks token 0.
        var plain: [Float] = [2.0, 1.9, -1]
        var unpenalized = Sampler(.greedy)
        XCTAssertEqual(unpenalized.sample(logits: &plain, history: [0]), 0)
    }

    func testRepetitionWindow() {
        let l: [Float] = [2.0, 1.9]
        // Token 0 is outside a window of the last 2 tokens.
        var windowed = Sampler(SamplingParameters(repetitionPenalty: 1.5, repetitionWindow: 2))
        var a = l
        XCTAssertEqual(windowed.sample(logits: &a, history: [0, 5, 5]), 0)
        var b = l
        XCTAssertEqual(windowed.sample(logits: &b, history: [5, 0, 5]), 1)
        // A negative window covers the whole history; 0 disables the penalty.
        var whole = Sampler(SamplingParameters(repetitionPenalty: 1.5, repetitionWindow: -1))
        var c = l
        XCTAssertEqual(whole.sample(logits: &c, history: [0] + Array(repeating: 5, count: 500)), 1)
        var off = Sampler(SamplingParameters(repetitionPenalty: 1.5, repetitionWindow: 0))
        var d = l
        XCTAssertEqual(off.sample(logits: &d, history: [0]), 0)
        XCTAssertEqual(d, l)
    }

    func testPenaltyAppliesBeforeSampling() {
        // With sampling on, a strongly penalized token becomes rare.
        let l = logits(forProbabilities: [0.5, 0.5])
        let params = SamplingParameters(temperature: 1, topK: 0, topP: 1, minP: 0, repetitionPenalty: 3, seed: 12)
        // Both logits are log(0.5) < 0, so token 0's is multiplied by 3: weight 0.125 vs 0.5.
        let f = frequencies(draw(20_000, from: l, params, history: [0]))
        XCTAssertEqual(f[0] ?? 0, 0.125 / 0.625, accuracy: 0.015)
    }
}
