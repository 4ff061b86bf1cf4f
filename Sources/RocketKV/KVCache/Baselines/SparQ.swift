import Foundation
import CKernels

/// `sparq`: SparQ attention (spec §9.4, §16.7) in its GQA form. Keeps the full cache plus a second,
/// dimension-major f16 copy of the keys (so the `r` chosen dimensions of every key are contiguous strips)
/// and a running sum of the cached values (f64).
///
/// Each decode step, per group: the `r` dimensions with the largest `Σ_h |q_h,i|`; per head the approximate
/// probabilities `ŝ_h = softmax(q_h[i1]·K[:, i1]ᵀ / sqrt(d·‖q_h[i1]‖₁/‖q_h‖₁))`; the `k` tokens with the largest
/// `Σ_h ŝ_h` (ties: lower slot); exact attention `y_h` over them; output `α_h·y_h + (1 − α_h)·v̄` with
/// `α_h = Σ_{j∈i2} ŝ_h[j]` and `v̄` the mean of every cached value of the group, the current token's included
/// (`meanValue: false` outputs `y_h`).
public final class SparQ: KVPolicy, KVStreamInspectable {
    public let shape: AttentionShape
    public let rank: Int
    public let tokensPerStep: Int
    public let meanValue: Bool
    private let streams: [[KVStream]]
    private let transposed: [[TransposedKeys]]
    private var valueSums: [[[Double]]]
    /// `[layer][kvHead]`: dimensions and slots chosen in the last decode step (ascending); `[layer][queryHead]`: α and ŝ.
    public private(set) var lastDims: [[[Int]]]
    public private(set) var lastSlots: [[[Int]]]
    public private(set) var lastAlpha: [[Float]]
    public private(set) var lastApproximate: [[[Float]]]

    public init(shape: AttentionShape, rank: Int, tokensPerStep: Int, meanValue: Bool = true) {
        self.shape = shape
        self.rank = rank
        self.tokensPerStep = tokensPerStep
        self.meanValue = meanValue
        streams = (0..<shape.layers).map { _ in (0..<shape.kvHeads).map { _ in KVStream(headDim: shape.headDim) } }
        transposed = (0..<shape.layers).map { _ in (0..<shape.kvHeads).map { _ in TransposedKeys(headDim: shape.headDim) } }
        valueSums = Array(repeating: Array(repeating: Array(repeating: 0, count: shape.headDim), count: shape.kvHeads), count: shape.layers)
        lastDims = Array(repeating: Array(repeating: [], count: shape.kvHeads), count: shape.layers)
        lastSlots = lastDims
        lastAlpha = Array(repeating: Array(repeating: 1, count: shape.queryHeads), count: shape.layers)
        lastApproximate = Array(repeating: Array(repeating: [], count: shape.queryHeads), count: shape.layers)
    }

    /// Project defaults (spec §16.7): `r = clamp(round(d·t/S), 1, d)`, `k = ⌊t/2⌋`.
    public static func defaultRank(headDim d: Int, budget t: Int, sequenceLength s: Int) -> Int {
        min(d, max(1, BaselineBudget.round(Double(d) * Double(t) / Double(s))))
    }

    private func append(layer: Int, _ input: AttentionInput) -> Int {
        let before = streams[layer][0].count, d = shape.headDim
        for (g, stream) in streams[layer].enumerated() {
            stream.append(input, head: g, kvHeads: shape.kvHeads)
            var v = [Float](repeating: 0, count: d)
            for s in before..<stream.count {
                transposed[layer][g].add(stream.keys + s * d)
                rk_f16_to_f32(stream.values + s * d, &v, Int32(d))
                for i in 0..<d { valueSums[layer][g][i] += Double(v[i]) }
            }
        }
        return before
    }

    public func prefill(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        let before = append(layer: layer, input)
        causalAttention(input, streams: streams[layer], visibleBefore: before, shape: shape, output: output)
    }

    public func finishPrefill() {}

    public func decode(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        precondition(input.tokens == 1, "decode takes one token")
        _ = append(layer: layer, input)
        let d = shape.headDim, group = shape.groupSize, n = streams[layer][0].count
        for g in 0..<shape.kvHeads {
            let heads = (g * group)..<((g + 1) * group)
            var absSum = [Float](repeating: 0, count: d)
            for h in heads { for i in 0..<d { absSum[i] += abs(input.queries[h * d + i]) } }
            let dims = KVSelect.topIndices(absSum, rank)
            var total = [Float](repeating: 0, count: n)
            var approximate = [[Float]]()
            for h in heads {
                let q = input.queries + h * d
                let full = (0..<d).reduce(Float(0)) { $0 + abs(q[$1]) }, part = dims.reduce(Float(0)) { $0 + abs(q[$1]) }
                let temperature = part > 0 && full > 0 ? (Float(d) * part / full).squareRoot() : 1
                var s = transposed[layer][g].partialScores(query: q, dims: dims, count: n)
                let m = s.max() ?? 0
                var sum: Float = 0
                for j in 0..<n { s[j] = expf((s[j] - m) / temperature); sum += s[j] }
                for j in 0..<n { s[j] /= sum; total[j] += s[j] }
                approximate.append(s)
            }
            let slots = KVSelect.topIndices(total, tokensPerStep)
            let slots32 = slots.map { Int32($0) }
            let mean = valueSums[layer][g].map { Float($0 / Double(n)) }
            for (index, h) in heads.enumerated() {
                let out = output + h * d
                slots32.withUnsafeBufferPointer {
                    Attention.sparse(query: input.queries + h * d, stream: streams[layer][g], slots: $0, scale: shape.scale, output: out)
                }
                let alpha = slots.reduce(Float(0)) { $0 + approximate[index][$1] }
                if meanValue { for i in 0..<d { out[i] = alpha * out[i] + (1 - alpha) * mean[i] } }
                lastAlpha[layer][h] = alpha
                lastApproximate[layer][h] = approximate[index]
            }
            lastDims[layer][g] = dims
            lastSlots[layer][g] = slots
        }
    }

    public var inspectableStreams: [KVStream] { Array(streams.joined()) }

    public var statistics: KVStatistics {
        var s = KVStatistics()
        s.add(inspectableStreams, read: false)
        for (layer, row) in transposed.enumerated() {
            for (g, keys) in row.enumerated() {
                s.storedBytes += keys.allocatedBytes + shape.headDim * 8
                s.bytesReadLastStep += lastDims[layer][g].count * keys.count * 2 + lastSlots[layer][g].count * 2 * shape.headDim * 2
                if meanValue { s.bytesReadLastStep += shape.headDim * 8 }
            }
        }
        return s
    }
}

/// A dimension-major f16 copy of a stream's keys: `keys[i·capacity + slot]`.
final class TransposedKeys {
    let headDim: Int
    private(set) var count = 0
    private var capacity = 0
    private var keys: [UInt16] = []

    init(headDim: Int) { self.headDim = headDim }

    var allocatedBytes: Int { keys.count * 2 }

    func add(_ key: UnsafePointer<UInt16>) {
        if count == capacity {
            let newCapacity = max(64, capacity * 2)
            var grown = [UInt16](repeating: 0, count: headDim * newCapacity)
            for i in 0..<headDim { for j in 0..<count { grown[i * newCapacity + j] = keys[i * capacity + j] } }
            keys = grown
            capacity = newCapacity
        }
        for i in 0..<headDim { keys[i * capacity + count] = key[i] }
        count += 1
    }

    /// `Σ_{i∈dims} q_i·K[j, i]` for the first `count` slots, reading only the strips of `dims`.
    func partialScores(query: UnsafePointer<Float>, dims: [Int], count n: Int) -> [Float] {
        var scores = [Float](repeating: 0, count: n), strip = scores
        keys.withUnsafeBufferPointer { k in
            for i in dims {
                rk_f16_to_f32(k.baseAddress! + i * capacity, &strip, Int32(n))
                let q = query[i]
                for j in 0..<n { scores[j] += q * strip[j] }
            }
        }
        return scores
    }
}
