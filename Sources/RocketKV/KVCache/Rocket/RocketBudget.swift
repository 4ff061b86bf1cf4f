import Foundation

/// RocketKV's split of one token budget `t` between stage 1 (SnapKV eviction) and stage 2 (HSA),
/// ROCKETKV.md §5. All arithmetic is in Double (§13 item 20).
///
/// - `accuracy` is §5.3 [A] (the default): `S` = prompt + new tokens (no cap, §16.3), capacity floor
///   `C ≥ min(2·N_new, S)`, `k1 = floor(d·P/c2)`.
/// - `efficiency` is §5.4 [E]: `S` rounded up to a multiple of 8, `t ≤ S`, no capacity floor, `k2` and `k1`
///   rounded half-to-even, `k1` clamped to `[1, d]`.
/// - `hsa` is HSA alone (§16.7): `ρ = 0`, no stage 1 (`C = S`), `P = ⌈√c⌉` (1 if that exceeds `c`),
///   `k1 = max(1, floor(d·P/c))`, `k2 = floor(t/2)`.
///
/// Project decision: `k1` is clamped to `[1, d]` in every split (the [A] formula can reach 0 only at ratios no
/// setting uses; the §5.6/§5.7 values are unaffected).
public struct RocketPlan: Sendable, Equatable, CustomStringConvertible {
    public enum Split: String, Sendable, CaseIterable {
        case accuracy, efficiency, hsa
    }

    public var split: Split
    /// `S`: the sequence length the budget is planned for.
    public var sequenceLength: Int
    /// `t`: tokens (K+V pairs) read per decode step per KV group ([E] clamps it to `S`).
    public var budget: Int
    /// `N_new`: tokens reserved for generation.
    public var maxNewTokens: Int
    /// `c = max(1, S/t)`.
    public var compression: Double
    /// `ρ`: the share of `log c` given to stage 1 (0 for HSA alone).
    public var rho: Double
    /// `C`: stage-1 capacity, prompt tokens kept plus generated tokens.
    public var capacity: Int
    /// `B_p = C − N_new`: tokens per KV group kept by stage 1 at the end of a prompt (window included).
    public var promptBudget: Int
    /// Tokens attended exactly per decode step per KV group.
    public var k2: Int
    /// `c2 = max(1, C/t)`: the ratio left to stage 2.
    public var stage2Compression: Double
    /// `P`: HSA page size in cache slots.
    public var pageSize: Int
    /// Head dimensions used by HSA's page scores.
    public var k1: Int
    /// `w`: SnapKV observation window.
    public var window: Int
    /// `κ`: SnapKV max-pooling kernel.
    public var kernel: Int
    /// Whose window votes stage 1 uses in each layer.
    public var votes: StageOneVotes = .layer
    /// True when stage 2 scores every kept token exactly (`P = 1`, `k1 = d`) instead of HSA's estimate.
    public var exactScores = false

    /// §5.3 [A]. `rho` overrides the adaptive `ρ = min(0.2 + 0.06·log2 c, 0.8)`.
    public static func accuracy(sequenceLength S: Int, budget t: Int, maxNewTokens: Int, headDim d: Int,
                                rho fixedRho: Double? = nil, window: Int = 32, kernel: Int = 63) -> RocketPlan {
        let c = max(1, Double(S) / Double(t))
        let rho = fixedRho ?? min(0.2 + 0.06 * log2(c), 0.8)
        var C = Int((Double(S) / pow(c, rho)).rounded(.down))
        C = max(C, min(2 * maxNewTokens, S))
        let c2 = max(1, Double(C) / Double(t))
        let P = pageSize(ratio: c2, rounding: .up)
        return RocketPlan(split: .accuracy, sequenceLength: S, budget: t, maxNewTokens: maxNewTokens, compression: c,
                          rho: rho, capacity: C, promptBudget: C - maxNewTokens, k2: t / 2, stage2Compression: c2,
                          pageSize: P, k1: headDims(d, pageSize: P, ratio: c2, rounding: .down), window: window, kernel: kernel)
    }

    /// §5.4 [E]: `S = roundup8(L_p + N_new)`.
    public static func efficiency(promptLength: Int, budget: Int, maxNewTokens: Int, headDim d: Int,
                                  rho fixedRho: Double? = nil, window: Int = 32, kernel: Int = 63) -> RocketPlan {
        let S = (promptLength + maxNewTokens + 7) / 8 * 8
        let t = min(S, budget)
        let c = max(1, Double(S) / Double(t))
        let rho = fixedRho ?? min(0.2 + 0.06 * log2(c), 0.8)
        let C = Int((Double(S) / pow(c, rho)).rounded(.down))
        let c2 = max(1, Double(C) / Double(t))
        let P = min(Int(c2.rounded(.down)), Int(c2.squareRoot().rounded(.up)))
        let k2 = min(Int((Double(t) / 2).rounded(.toNearestOrEven)), C)
        let k1 = headDims(d, pageSize: P, ratio: c2, rounding: .toNearestOrEven)
        return RocketPlan(split: .efficiency, sequenceLength: S, budget: t, maxNewTokens: maxNewTokens, compression: c,
                          rho: rho, capacity: C, promptBudget: min(S - maxNewTokens, C - maxNewTokens), k2: k2,
                          stage2Compression: c2, pageSize: P, k1: k1, window: window, kernel: kernel)
    }

    /// §16.7: HSA alone on the full cache (`ρ = 0`, `C = S`, no stage 1).
    public static func hsaOnly(sequenceLength S: Int, budget t: Int, maxNewTokens: Int, headDim d: Int) -> RocketPlan {
        let c = max(1, Double(S) / Double(t))
        let P = pageSize(ratio: c, rounding: .up)
        let k1 = headDims(d, pageSize: P, ratio: c, rounding: .down)
        return RocketPlan(split: .hsa, sequenceLength: S, budget: t, maxNewTokens: maxNewTokens, compression: c, rho: 0,
                          capacity: S, promptBudget: S - maxNewTokens, k2: t / 2, stage2Compression: c, pageSize: P,
                          k1: k1, window: 0, kernel: 0)
    }

    /// Re-plans HSA's page size as `√c2` rounded to the nearest integer instead of up (1 if that exceeds `c2`), with
    /// `k1` from the split's own formula for that `P`, so the estimation traffic stays `≈ d·C/c2` (option
    /// `page-round=nearest`; a project option, not the paper's planner). Balances the sequence and head-dimension
    /// cuts of `c2` more evenly: at `c2 = 5.38`, `P = 2, k1 = 23` instead of `P = 3, k1 = 35` for `d = 64`.
    public mutating func roundPageToNearest(headDim d: Int) {
        pageSize = Self.pageSize(ratio: stage2Compression, rounding: .toNearestOrAwayFromZero)
        k1 = Self.headDims(d, pageSize: pageSize, ratio: stage2Compression, rounding: split == .efficiency ? .toNearestOrEven : .down)
    }

    /// Stage 2 scoring every kept token exactly: pages of one slot and every head dimension, so HSA's page
    /// scores are `q·k` and its top-`k2` is exact top-k over what stage 1 kept (option `scores=exact`).
    public mutating func scoreExactly(headDim d: Int) {
        pageSize = 1
        k1 = d
        exactScores = true
    }

    /// Bytes stage 2 reads per decode step in the layers of `shape` (§7.2): per KV group `k1` page bounds per page
    /// and the `k2` attended rows, over the capacity `C`.
    public func stageTwoBytes(_ shape: AttentionShape) -> Int {
        let pages = (capacity + pageSize - 1) / pageSize
        return shape.layers * shape.kvHeads * HSA.bytesRead(k1: k1, pages: pages, attended: min(k2, capacity),
                                                            headDim: shape.headDim, kvType: shape.kvType)
    }

    /// The share of a decode step's bytes that exact scores may add before `scores=auto` keeps the estimate.
    static let exactScoresAllowance = 0.05

    /// Whether exact scores add at most `exactScoresAllowance` to the bytes a decode step reads: the model's
    /// weights plus this plan's stage-2 reads in the layers of `shape` (project decision, EVALUATION.md: the
    /// estimate exists to save bytes; where what it saves is a few per cent of the step, it is not worth its
    /// recall). False when the weights' bytes are unknown.
    public func exactScoresAreCheap(_ shape: AttentionShape, weightBytesPerToken: Int?) -> Bool {
        guard let weightBytesPerToken else { return false }
        var exact = self
        exact.scoreExactly(headDim: shape.headDim)
        let estimate = stageTwoBytes(shape)
        return Double(exact.stageTwoBytes(shape) - estimate) <= Self.exactScoresAllowance * Double(weightBytesPerToken + estimate)
    }

    /// HSA's page size for the stage-2 ratio `c2`: `√c2` rounded by `rule`, or 1 where that exceeds `c2`.
    static func pageSize(ratio c2: Double, rounding rule: FloatingPointRoundingRule) -> Int {
        let P = max(1, Int(c2.squareRoot().rounded(rule)))
        return Double(P) > c2 ? 1 : P
    }

    /// `k1 = d·P/c2` rounded by `rule` and clamped to `[1, d]` (the estimation then reads ≈ `d·C/c2` elements).
    static func headDims(_ d: Int, pageSize P: Int, ratio c2: Double, rounding rule: FloatingPointRoundingRule) -> Int {
        min(d, max(1, Int((Double(d * P) / c2).rounded(rule))))
    }

    /// One line for `--verbose` and the bench.
    public var description: String {
        let name = split == .hsa ? "HSA" : "RocketKV[\(split == .accuracy ? "A" : "E")]"
        var s = name + String(format: " S=%d t=%d c=%.3f ρ=%.3f C=%d B_p=%d k2=%d c2=%.3f P=%d k1=%d",
                       sequenceLength, budget, compression, rho, capacity, promptBudget, k2, stage2Compression, pageSize, k1)
        if split != .hsa { s += " w=\(window) κ=\(kernel)" + (votes == .layer ? "" : " votes=\(votes.rawValue)") }
        if exactScores { s += " scores=exact" }
        return s
    }
}

// The resolved plan is what `--verbose` and the bench print for these policies.
extension HSAPolicy { public var planDescription: String? { plan.description } }
extension RocketPolicy { public var planDescription: String? { plan.description } }
extension RocketMTPolicy { public var planDescription: String? { plan.description } }
