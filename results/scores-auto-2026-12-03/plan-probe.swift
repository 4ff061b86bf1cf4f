// Which stage-2 scores `scores=auto` picks, and what exact scores would add to a decode step's bytes, for Gemma 3
// 270M's global layers and SmolLM2-135M (weights per token as the bench reports them), prompts 512–32,768, budgets
// 128–1024, 128 new tokens planned (the eval's default). Run:
//   cp results/scores-auto-2026-12-03/plan-probe.swift Tests/RocketKVTests/ZZPlanProbe.swift
//   swift test -c release --filter ZZPlanProbe | grep '^PLAN' > results/scores-auto-2026-12-03/plan-probe.txt
import XCTest
@testable import RocketKV

final class ZZPlanProbe: XCTestCase {
    func testPrint() throws {
        let models: [(String, AttentionShape, Int)] = [
            ("gemma3-270m", AttentionShape(layers: 3, queryHeads: 4, kvHeads: 1, headDim: 256), 246_364_840),
            ("smollm2-135m", AttentionShape(layers: 30, queryHeads: 9, kvHeads: 3, headDim: 64), 96_436_836)]
        print("PLAN model prompt budget choice P k1 estimate_bytes exact_bytes extra_percent_of_step")
        for (name, shape, weights) in models {
            for prompt in [512, 1024, 2048, 4096, 8192, 16384, 32768] {
                for budget in [128, 256, 512, 1024] where budget < prompt {
                    var context = KVMethodContext(shape: shape, budget: budget, promptLength: prompt, maxNewTokens: 128,
                                                  options: ["scores": "estimate"])
                    context.weightBytesPerToken = weights
                    let estimate = try RocketPlan.rocket(context, window: RocketPolicy.windowOption)
                    context.options = [:]
                    let chosen = try RocketPlan.rocket(context, window: RocketPolicy.windowOption)
                    var exact = estimate
                    exact.scoreExactly(headDim: shape.headDim)
                    let e = estimate.stageTwoBytes(shape), x = exact.stageTwoBytes(shape)
                    print(String(format: "PLAN %@ %d %d %@ %d %d %d %d %.2f", name, prompt, budget, chosen.exactScores ? "exact" : "estimate",
                                 estimate.pageSize, estimate.k1, e, x, 100 * Double(x - e) / Double(weights + e)))
                }
            }
        }
    }
}
