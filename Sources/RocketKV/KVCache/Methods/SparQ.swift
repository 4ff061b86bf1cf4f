import Foundation
import CKernels

/// `sparq`: SparQ attention (spec §9.4, §16.7) in its GQA form. Keeps the full cache plus a second,
/// dimension-major f16 copy of the keys (`PageMetadata` with pages of one slot, so the `r` chosen dimensions
/// of every key are contiguous strips)
/// and a running sum of the cached values (f64).
///
/// Each decode step, per group: the `r` dimensions with the largest `Σ_h |q_h,i|`; per head the approximate
/// probabilities `ŝ_h = softmax(q_h[i1]·K[:, i1]ᵀ / sqrt(d·‖q_h[i1]‖₁/‖q_h‖₁))`; the `k` tokens with the largest
/// `Σ_h ŝ_h` (ties: lower slot); exact attention `y_h` over them; output `α_h·y_h + (1 − α_h)·v̄` with
/// `α_h = Σ_{j∈i2} ŝ_h[j]` and `v̄` the mean of every cached value of the group, the current token's included
/// (`meanValue: false` outputs `y_h`).
public final class SparQ: KVPolicy, KVStreamInspectable {
    static let rankOption = KVOption("rank", computed: "clamp(round(d·t/S), 1, d)", "query dimensions used")
    static let tokensOption = KVOption("tokens", computed: "t/2", "tokens attended per step")
    static let meanOption = KVOption("mean", default: 1, "1: mean-value interpolation, 0: off")
    public static let method = KVMethod(
        name: "sparq", summary: "SparQ: top-r query dimensions estimate scores, top-k tokens attended exactly, mean-value correction; keys stored twice.",
        options: [rankOption, tokensOption, meanOption], needsBudget: true) { context in
        let budget = try context.requiredBudget(), d = context.shape.headDim, s = context.promptLength + context.maxNewTokens
        return SparQ(shape: context.shape,
                     rank: try context.int(rankOption, computed: defaultRank(headDim: d, budget: budget, sequenceLength: max(1, s)), range: 1...d),
                     tokensPerStep: try context.int(tokensOption, computed: max(1, budget / 2), range: 1...1_000_000),
                     meanValue: try context.int(meanOption, range: 0...1) == 1)
    }

    public let shape: AttentionShape
    public let rank: Int
    public let tokensPerStep: Int
    public let meanValue: Bool
    public let store: KVStore
    /// `transposed[layer][kvHead]`: the stream's keys, dimension-major.
    private let transposed: [[PageMetadata]]
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
        store = KVStore(shape: shape)
        transposed = (0..<shape.layers).map { _ in (0..<shape.kvHeads).map { _ in PageMetadata(headDim: shape.headDim, pageSize: 1, precision: .f16) } }
        valueSums = Array(repeating: Array(repeating: Array(repeating: 0, count: shape.headDim), count: shape.kvHeads), count: shape.layers)
        lastDims = Array(repeating: Array(repeating: [], count: shape.kvHeads), count: shape.layers)
        lastSlots = lastDims
        lastAlpha = Array(repeating: Array(repeating: 1, count: shape.queryHeads), count: shape.layers)
        lastApproximate = Array(repeating: Array(repeating: [], count: shape.queryHeads), count: shape.layers)
        store.didAppend = { [unowned self] in didAppend(layer: $0, group: $1, slots: $2) }
    }

    /// Project defaults (spec §16.7): `r = clamp(round(d·t/S), 1, d)`, `k = ⌊t/2⌋`.
    public static func defaultRank(headDim d: Int, budget t: Int, sequenceLength s: Int) -> Int {
        min(d, max(1, roundHalfAway(Double(d) * Double(t) / Double(s))))
    }

    /// Extends the transposed keys and the value sums with the rows just appended.
    private func didAppend(layer: Int, group g: Int, slots: Range<Int>) {
        let stream = store.streams[layer][g], d = shape.headDim
        var v = [Float](repeating: 0, count: d)
        transposed[layer][g].extend(covering: stream)
        for s in slots {
            stream.value(s, into: &v)
            for i in 0..<d { valueSums[layer][g][i] += Double(v[i]) }
        }
    }

    public func prefill(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        store.appendAndAttend(layer: layer, input, output: output)
    }

    public func decode(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        precondition(input.tokens == 1, "decode takes one token")
        store.append(layer: layer, input)
        let d = shape.headDim, group = shape.groupSize, n = store.count(layer: layer)
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
                var s = Self.partialScores(transposed[layer][g], query: q, dims: dims, count: n)
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
                    Attention.sparse(query: input.queries + h * d, stream: store.streams[layer][g], slots: $0, scale: shape.scale, output: out)
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

    /// `Σ_{i∈dims} q_i·K[j, i]` for the first `count` slots, reading only the strips of `dims`.
    static func partialScores(_ keys: PageMetadata, query: UnsafePointer<Float>, dims: [Int], count n: Int) -> [Float] {
        var scores = [Float](repeating: 0, count: n), strip = scores
        for i in dims {
            rk_f16_to_f32(keys.halfStrip(dim: i, max: false), &strip, Int32(n))
            let q = query[i]
            for j in 0..<n { scores[j] += q * strip[j] }
        }
        return scores
    }

    public var inspectableStreams: [KVStream] { store.inspectableStreams }

    public var statistics: KVStatistics {
        var s = store.statistics(readingAll: false)
        for (layer, row) in transposed.enumerated() {
            for (g, keys) in row.enumerated() {
                s.storedBytes += keys.allocatedBytes + shape.headDim * 8
                s.bytesReadLastStep += lastDims[layer][g].count * keys.tokens * 2 + lastSlots[layer][g].count * shape.rowPairBytes
                if meanValue { s.bytesReadLastStep += shape.headDim * 8 }
            }
        }
        return s
    }
}
