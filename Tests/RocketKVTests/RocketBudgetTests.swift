import RocketKV
import XCTest

/// Golden values of ROCKETKV.md §5.6 and §5.7 (computed in Double, §13 item 20) and §16.7.
final class RocketBudgetTests: XCTestCase {
    func testWorkedExampleAccuracyAndEfficiency() {
        let a = RocketPlan.accuracy(sequenceLength: 8192, budget: 256, maxNewTokens: 64, headDim: 64)
        XCTAssertEqual(a.compression, 32)
        XCTAssertEqual(a.rho, 0.5, accuracy: 1e-12)
        XCTAssertEqual(a.capacity, 1448)
        XCTAssertEqual(a.promptBudget, 1384)
        XCTAssertEqual(a.k2, 128)
        XCTAssertEqual(a.stage2Compression, 5.65625, accuracy: 1e-12)
        XCTAssertEqual(a.pageSize, 3)
        XCTAssertEqual(a.k1, 33)
        XCTAssertEqual(a.window, 32)
        XCTAssertEqual(a.kernel, 63)
        print("plan: \(a)")
        // Traffic at full capacity (§5.6): 483 pages × 33 dims + 128 × 2 × 64.
        XCTAssertEqual((a.capacity + a.pageSize - 1) / a.pageSize * a.k1 + a.k2 * 2 * 64, 32_323)

        let e = RocketPlan.efficiency(promptLength: 8192 - 64, budget: 256, maxNewTokens: 64, headDim: 64)
        XCTAssertEqual(e.sequenceLength, 8192)
        XCTAssertEqual(e.capacity, 1448)
        XCTAssertEqual(e.promptBudget, 1384)
        XCTAssertEqual(e.k2, 128)
        XCTAssertEqual(e.pageSize, 3)
        XCTAssertEqual(e.k1, 34)
        print("plan: \(e)")
    }

    func testAccuracyTable() {
        // S, t, c, ρ, C, B_p, k2, c2, P, k1 (d = 128, N_new = 128)
        let rows: [(Int, Int, Double, Double, Int, Int, Int, Double, Int, Int)] = [
            (8192, 256, 32, 0.50, 1448, 1320, 128, 5.656, 3, 67),
            (8192, 1024, 8, 0.38, 3717, 3589, 512, 3.630, 2, 70),
            (8192, 4096, 2, 0.26, 6841, 6713, 2048, 1.670, 1, 76),
            (16384, 256, 64, 0.56, 1595, 1467, 128, 6.230, 3, 61),
            (32768, 256, 128, 0.62, 1618, 1490, 128, 6.320, 3, 60),
            (32768, 2048, 16, 0.44, 9674, 9546, 1024, 4.724, 3, 81),
            (65536, 512, 128, 0.62, 3236, 3108, 256, 6.320, 3, 60),
            (131072, 256, 512, 0.74, 1296, 1168, 128, 5.062, 3, 75),
            (131072, 4096, 32, 0.50, 23170, 23042, 2048, 5.657, 3, 67),
        ]
        for (S, t, c, rho, C, Bp, k2, c2, P, k1) in rows {
            let p = RocketPlan.accuracy(sequenceLength: S, budget: t, maxNewTokens: 128, headDim: 128)
            let label = "S=\(S) t=\(t)"
            XCTAssertEqual(p.compression, c, accuracy: 1e-12, label)
            XCTAssertEqual(p.rho, rho, accuracy: 5e-3, label)
            XCTAssertEqual(p.capacity, C, label)
            XCTAssertEqual(p.promptBudget, Bp, label)
            XCTAssertEqual(p.k2, k2, label)
            XCTAssertEqual(p.stage2Compression, c2, accuracy: 1e-3, label)
            XCTAssertEqual(p.pageSize, P, label)
            XCTAssertEqual(p.k1, k1, label)
        }
    }

    func testEfficiencyTable() {
        // L_p, S, t, C, B_p, k2, P, k1 (d = 128, N_new = 50)
        let rows: [(Int, Int, Int, Int, Int, Int, Int, Int)] = [
            (16384, 16440, 256, 1596, 1546, 128, 3, 62),
            (16384, 16440, 4096, 10533, 10483, 2048, 2, 100),
            (31744, 31800, 256, 1619, 1569, 128, 3, 61),
            (65536, 65592, 256, 1509, 1459, 128, 3, 65),
            (96256, 96312, 256, 1401, 1351, 128, 3, 70),
            (96256, 96312, 1024, 6498, 6448, 512, 3, 61),
            (96256, 96312, 4096, 21607, 21557, 2048, 3, 73),
        ]
        for (Lp, S, t, C, Bp, k2, P, k1) in rows {
            let p = RocketPlan.efficiency(promptLength: Lp, budget: t, maxNewTokens: 50, headDim: 128)
            let label = "L_p=\(Lp) t=\(t)"
            XCTAssertEqual(p.sequenceLength, S, label)
            XCTAssertEqual(p.capacity, C, label)
            XCTAssertEqual(p.promptBudget, Bp, label)
            XCTAssertEqual(p.k2, k2, label)
            XCTAssertEqual(p.pageSize, P, label)
            XCTAssertEqual(p.k1, k1, label)
        }
    }

    func testShortInputsAndOverrides() {
        // t ≥ S: c = 1, nothing evicted, P = 1, k1 = d, but k2 stays t/2 ([A], §16.4).
        let p = RocketPlan.accuracy(sequenceLength: 500, budget: 1024, maxNewTokens: 20, headDim: 64)
        XCTAssertEqual(p.compression, 1)
        XCTAssertEqual(p.capacity, 500)
        XCTAssertEqual(p.promptBudget, 480)
        XCTAssertEqual(p.pageSize, 1)
        XCTAssertEqual(p.k1, 64)
        XCTAssertEqual(p.k2, 512)
        // Fixed ρ.
        let r = RocketPlan.accuracy(sequenceLength: 8192, budget: 256, maxNewTokens: 64, headDim: 64, rho: 0.3)
        XCTAssertEqual(r.rho, 0.3)
        XCTAssertEqual(r.capacity, Int(8192 / pow(32.0, 0.3)))
        // HSA alone (§16.7): ρ = 0, C = S, P = ⌈√32⌉ = 6, k1 = floor(64·6/32) = 12.
        let h = RocketPlan.hsaOnly(sequenceLength: 8192, budget: 256, maxNewTokens: 64, headDim: 64)
        XCTAssertEqual(h.rho, 0)
        XCTAssertEqual(h.capacity, 8192)
        XCTAssertEqual(h.pageSize, 6)
        XCTAssertEqual(h.k1, 12)
        XCTAssertEqual(h.k2, 128)
        // c = 1.5: ⌈√1.5⌉ = 2 > 1.5 → P = 1.
        XCTAssertEqual(RocketPlan.hsaOnly(sequenceLength: 384, budget: 256, maxNewTokens: 0, headDim: 64).pageSize, 1)
    }

    func testMethodOptions() throws {
        let shape = AttentionShape(layers: 2, queryHeads: 4, kvHeads: 2, headDim: 32)
        func context(_ options: [String: String]) -> KVMethodContext {
            KVMethodContext(shape: shape, budget: 64, promptLength: 1000, maxNewTokens: 16, options: options)
        }
        for name in ["hsa", "rocket", "rocket-mt"] {
            XCTAssertNoThrow(try KVMethods.make(name, context: context([:])), name)
            XCTAssertThrowsError(try KVMethods.make(name, context: KVMethodContext(shape: shape, budget: nil, promptLength: 10, maxNewTokens: 4)))
            XCTAssertThrowsError(try KVMethods.make(name, context: context(["k1": "33"])), name)
            XCTAssertThrowsError(try KVMethods.make(name, context: context(["page": "0"])), name)
        }
        XCTAssertThrowsError(try KVMethods.make("rocket", context: context(["kernel": "8"])))
        XCTAssertThrowsError(try KVMethods.make("rocket", context: context(["split": "fast"])))
        XCTAssertThrowsError(try KVMethods.make("rocket", context: context(["rho": "1.5"])))
        XCTAssertThrowsError(try KVMethods.make("hsa", context: context(["window": "8"])))
        let plan = try RocketPlan.rocket(context(["split": "efficiency", "rho": "0.5", "window": "16", "page": "4"]), window: RocketPolicy.windowOption)
        XCTAssertEqual(plan.split, .efficiency)
        XCTAssertEqual(plan.rho, 0.5)
        XCTAssertEqual(plan.window, 16)
        XCTAssertEqual(plan.pageSize, 4)
        XCTAssertEqual(try RocketPlan.rocket(context([:]), window: RocketMTPolicy.windowOption).window, 128)
        XCTAssertThrowsError(try KVMethods.make("rocket", context: context(["page-round": "down"])))
        // Options given to several methods: each gets the ones it has; one that none has is an error.
        let mixed = ["page-round": "nearest", "window": "16"]
        XCTAssertEqual(try KVMethods.options(mixed, for: "full"), [:])
        XCTAssertEqual(try KVMethods.options(mixed, for: "hsa"), ["page-round": "nearest"])
        XCTAssertEqual(try KVMethods.options(mixed, for: "rocket"), mixed)
        XCTAssertNoThrow(try KVMethods.checkOptions(mixed, usedBy: ["full", "rocket"]))
        XCTAssertThrowsError(try KVMethods.checkOptions(mixed, usedBy: ["full", "hsa"]))
        XCTAssertThrowsError(try KVMethods.checkOptions(["page-round": "nearest"], usedBy: ["full", "snapkv"]))
    }

    /// `page-round=nearest`: P = √c2 rounded to nearest, k1 re-derived with the split's own rule; the rest of the
    /// plan unchanged, and an explicit `page`/`k1` still wins.
    func testPageRoundingToNearest() throws {
        let shape = AttentionShape(layers: 2, queryHeads: 9, kvHeads: 3, headDim: 64)
        func plan(_ options: [String: String], split: String = "accuracy") throws -> RocketPlan {
            try RocketPlan.rocket(KVMethodContext(shape: shape, budget: 256, promptLength: 8192 - 64, maxNewTokens: 64,
                                                  options: options.merging(["split": split]) { a, _ in a }), window: RocketPolicy.windowOption)
        }
        // §5.6: c2 = 5.65625, √c2 = 2.378 → P = 2 (the paper's ⌈·⌉ gives 3); k1 = ⌊128 / 5.65625⌋ = 22 ([A]),
        // round(22.63) = 23 ([E]).
        let up = try plan([:]), nearest = try plan(["page-round": "nearest"])
        XCTAssertEqual([up.pageSize, up.k1], [3, 33])
        XCTAssertEqual([nearest.pageSize, nearest.k1], [2, 22])
        XCTAssertEqual([nearest.capacity, nearest.promptBudget, nearest.k2], [up.capacity, up.promptBudget, up.k2])
        XCTAssertEqual([try plan(["page-round": "nearest"], split: "efficiency").k1], [23])
        XCTAssertEqual(try plan(["page-round": "nearest", "page": "4", "k1": "16"]).pageSize, 4)
        XCTAssertEqual(try plan(["page-round": "nearest", "page": "4", "k1": "16"]).k1, 16)
        // c2 = 2.14 < 2.25 rounds down to 1 (per-token scores on d/c2 dims) where ⌈√c2⌉ = 2 pages.
        var small = RocketPlan.accuracy(sequenceLength: 3000, budget: 1024, maxNewTokens: 64, headDim: 64)
        XCTAssertEqual(small.stage2Compression, 2.14, accuracy: 0.01)
        XCTAssertEqual(small.pageSize, 2)
        small.roundPageToNearest(headDim: 64)
        XCTAssertEqual(small.pageSize, 1)
        XCTAssertEqual(small.k1, Int((64 / small.stage2Compression).rounded(.down)))
    }

    /// `scores`: `exact` is pages of one slot on every dimension; `auto` takes it exactly when the extra bytes it
    /// reads are at most 5 % of the step's (weights + stage 2), so on the threshold's two sides it differs; without
    /// the weights' bytes it keeps the paper's estimate; explicit `page`/`k1` win over both.
    func testExactScoresWhereTheyAreCheap() throws {
        func plan(_ shape: AttentionShape, prompt: Int, weights: Int?, _ options: [String: String] = [:]) throws -> RocketPlan {
            var context = KVMethodContext(shape: shape, budget: 256, promptLength: prompt, maxNewTokens: 64, options: options)
            context.weightBytesPerToken = weights
            return try RocketPlan.rocket(context, window: RocketPolicy.windowOption)
        }
        // Gemma 3 270M's global layers (3 layers, one KV head of 256 dims) against its 246 MB of weights per token,
        // and SmolLM2-135M's 30 layers of 3 KV heads of 64 dims against its ~96 MB.
        let gemma = AttentionShape(layers: 3, queryHeads: 4, kvHeads: 1, headDim: 256)
        let smol = AttentionShape(layers: 30, queryHeads: 9, kvHeads: 3, headDim: 64)
        let paper = try plan(gemma, prompt: 16_000, weights: nil)
        XCTAssertFalse(paper.exactScores)
        XCTAssertEqual(try plan(gemma, prompt: 16_000, weights: nil, ["scores": "auto"]), paper)
        let cheap = try plan(gemma, prompt: 16_000, weights: 246_364_840)
        XCTAssertEqual([cheap.pageSize, cheap.k1], [1, 256])
        XCTAssertTrue(cheap.exactScores && cheap.description.hasSuffix(" scores=exact"), cheap.description)
        var expected = paper
        expected.scoreExactly(headDim: 256)
        XCTAssertEqual(cheap, expected, "only P and k1 change")
        XCTAssertEqual(try plan(gemma, prompt: 16_000, weights: 246_364_840, ["scores": "estimate"]), paper)
        XCTAssertFalse(try plan(smol, prompt: 8_000, weights: 96_000_000).exactScores)
        XCTAssertTrue(try plan(smol, prompt: 8_000, weights: 96_000_000, ["scores": "exact"]).exactScores)
        let overridden = try plan(gemma, prompt: 16_000, weights: 246_364_840, ["page": "2"])
        XCTAssertEqual([overridden.pageSize, overridden.k1], [2, 256])
        XCTAssertFalse(overridden.exactScores)

        // The threshold: extra = exact − estimate bytes; exact iff extra ≤ 0.05 · (weights + estimate).
        let estimate = paper.stageTwoBytes(gemma), extra = expected.stageTwoBytes(gemma) - estimate
        XCTAssertEqual(estimate, 3 * (paper.k1 * ((paper.capacity + paper.pageSize - 1) / paper.pageSize) * 2 + paper.k2 * 2 * 512))
        XCTAssertGreaterThan(extra, 0)
        let threshold = Int((Double(extra) / 0.05).rounded(.up)) - estimate
        XCTAssertTrue(try plan(gemma, prompt: 16_000, weights: threshold + 1).exactScores)
        XCTAssertFalse(try plan(gemma, prompt: 16_000, weights: threshold - 2).exactScores)
        for name in ["rocket", "rocket-mt"] {
            var context = KVMethodContext(shape: gemma, budget: 256, promptLength: 4000, maxNewTokens: 64, options: ["scores": "fast"])
            context.weightBytesPerToken = 1
            XCTAssertThrowsError(try KVMethods.make(name, context: context), name)
        }
    }
}
