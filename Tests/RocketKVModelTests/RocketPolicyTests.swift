import Foundation
import RocketKV
import XCTest

/// `rocket`, `rocket-mt` and `hsa` on the real default model (30 layers, 3 KV heads, d = 64).
final class RocketPolicyTests: XCTestCase {
    static let model: LlamaModel = {
        do { return try LlamaModel(file: TestModel.file) } catch { fatalError("cannot load the model: \(error)") }
    }()

    /// ~1,000 tokens of varied text (prose, numbers, code, a list), cut to exactly `count` tokens.
    static func prompt(_ count: Int) throws -> [Int] {
        let paragraphs = [
            "The lighthouse keeper on Sable Point kept a logbook of every ship that passed between 1871 and 1903.",
            "In 1889 alone he recorded 412 schooners, 57 steamers and one balloon that drifted south toward the cape.",
            "func fibonacci(_ n: Int) -> Int { n < 2 ? n : fibonacci(n - 1) + fibonacci(n - 2) } // slow but clear",
            "Ingredients: 3 eggs, 250 g flour, 120 ml milk, a pinch of salt; whisk, rest for an hour, then fry thinly.",
            "Photosynthesis converts light energy into chemical energy, storing it in the bonds of glucose molecules.",
            "The committee met on Tuesday; Maria proposed moving the deadline to March 14, and Tomasz objected twice.",
            "SELECT name, COUNT(*) FROM orders WHERE total > 100 GROUP BY name ORDER BY 2 DESC LIMIT 10;",
            "Mountains near the pass rise above 4,800 metres, and snow closes the road from November until May.",
            "A prime number has exactly two divisors: 2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31 and 37 are the first.",
            "The secret code for the vault is 7391, and the backup key is kept under the blue ceramic owl.",
        ]
        let tokenizer = try Tokenizer(gguf: TestModel.file)
        var text = "Read the notes below and answer the question at the end.\n"
        var round = 0
        while tokenizer.encode(text).count < count + 40 {
            for (i, p) in paragraphs.enumerated() where (i + round) % 3 != 0 { text += "Note \(round).\(i): " + p + "\n" }
            round += 1
        }
        let question = tokenizer.encode("\nQuestion: what is the secret code for the vault? Answer:", addSpecial: false)
        return Array(tokenizer.encode(text).prefix(count - question.count)) + question
    }

    struct Run {
        var plan: RocketPlan?
        var afterPrefill: KVStatistics
        var steps: [KVStatistics]
        var tokens: [Int]
    }

    func generate(_ method: String, budget: Int?, prompt: [Int], newTokens: Int, options: [String: String] = [:]) throws -> Run {
        let model = Self.model
        let context = KVMethodContext(shape: model.config.attentionShape, budget: budget, promptLength: prompt.count,
                                      maxNewTokens: newTokens, options: options)
        let policy = try KVMethods.make(method, context: context)
        let session = InferenceSession(model: model, policy: policy)
        var logits = try session.prefill(prompt)
        let afterPrefill = policy.statistics
        var steps: [KVStatistics] = [], tokens: [Int] = []
        for _ in 0..<newTokens {
            XCTAssertFalse(logits.contains { !$0.isFinite }, "\(method): non-finite logits")
            let next = logits.indices.max { logits[$0] < logits[$1] }!
            tokens.append(next)
            logits = Array(try session.decode(next))
            steps.append(policy.statistics)
        }
        let plan = (policy as? RocketPolicy)?.plan ?? (policy as? RocketMTPolicy)?.plan ?? (policy as? HSAPolicy)?.plan
        return Run(plan: plan, afterPrefill: afterPrefill, steps: steps, tokens: tokens)
    }

    /// The §7.2 traffic of one decode step for the whole model: per layer and group `k1·⌈N1/P⌉` metadata values
    /// (f16) plus `2d·min(k2, N1)` f16 K/V values.
    func modelTraffic(_ plan: RocketPlan, cached n1: Int, layers: Int, groups: Int, d: Int) -> Int {
        layers * groups * (plan.k1 * ((n1 + plan.pageSize - 1) / plan.pageSize) * 2 + 2 * d * min(plan.k2, n1) * 2)
    }

    func testRocketCompressesAndGenerates() throws {
        let prompt = try Self.prompt(1000), newTokens = 12
        XCTAssertEqual(prompt.count, 1000)
        let shape = Self.model.config.attentionShape
        let L = shape.layers, H = shape.kvHeads, d = shape.headDim
        let full = try generate("full", budget: nil, prompt: prompt, newTokens: newTokens)
        let rocket = try generate("rocket", budget: 128, prompt: prompt, newTokens: newTokens)
        let plan = try XCTUnwrap(rocket.plan)
        print("rocket plan: \(plan)")
        XCTAssertEqual(plan.sequenceLength, 1012)
        XCTAssertEqual(full.afterPrefill.storedTokens, L * H * 1000)
        XCTAssertEqual(rocket.afterPrefill.storedTokens, L * H * plan.promptBudget)
        XCTAssertLessThan(plan.promptBudget, 1000)
        for (i, s) in rocket.steps.enumerated() {
            XCTAssertEqual(s.storedTokens, L * H * (plan.promptBudget + i + 1))
            let expected = modelTraffic(plan, cached: plan.promptBudget + i + 1, layers: L, groups: H, d: d)
            XCTAssertEqual(Double(s.bytesReadLastStep), Double(expected), accuracy: 0.1 * Double(expected))
        }
        let last = rocket.steps.last!, fullLast = full.steps.last!
        let agree = zip(full.tokens, rocket.tokens).prefix { $0 == $1 }.count
        print(String(format: "full:   stored %d tokens, %.2f MiB, read %.2f MiB/step",
                     fullLast.storedTokens, Double(fullLast.storedBytes) / 1048576, Double(fullLast.bytesReadLastStep) / 1048576))
        print(String(format: "rocket: stored %d tokens, %.2f MiB, read %.3f MiB/step (§7.2 model %.3f MiB); %d/%d greedy tokens as full",
                     last.storedTokens, Double(last.storedBytes) / 1048576, Double(last.bytesReadLastStep) / 1048576,
                     Double(modelTraffic(plan, cached: plan.promptBudget + newTokens, layers: L, groups: H, d: d)) / 1048576,
                     agree, newTokens))
        // Memory held: per layer and group, B_p + N_new + 1 reserved slots (f16 K, V and an Int32 position) plus
        // f16 min/max metadata for their pages. At c ≈ 8 stage 1 compresses only c^ρ ≈ 2.2× and the metadata adds
        // 1/P = 50% of the kept K+V (§7.1), so this is ≈ 0.7× the full cache, not less.
        let slots = plan.promptBudget + newTokens + 1
        let pages = (slots + plan.pageSize - 1) / plan.pageSize
        XCTAssertEqual(last.storedBytes, L * H * (slots * (2 * d * 2 + 4) + pages * 2 * d * 2))
        XCTAssertLessThan(last.storedBytes, fullLast.storedBytes * 3 / 4)
        XCTAssertLessThan(last.bytesReadLastStep, fullLast.bytesReadLastStep / 4)
    }

    /// Budget ≥ the sequence: c = 1, nothing is evicted, P = 1, k1 = d, and HSA attends k2 = t/2 tokens (by
    /// design); with t/2 ≥ N it attends everything and must follow the full cache's greedy path.
    func testRocketWithLargeBudget() throws {
        let prompt = try Self.prompt(1000), newTokens = 8
        let shape = Self.model.config.attentionShape
        let L = shape.layers, H = shape.kvHeads
        let full = try generate("full", budget: nil, prompt: prompt, newTokens: newTokens)
        let big = try generate("rocket", budget: 2048, prompt: prompt, newTokens: newTokens)
        let plan = try XCTUnwrap(big.plan)
        print("rocket plan (budget 2048): \(plan)")
        XCTAssertEqual(plan.compression, 1)
        XCTAssertEqual(plan.pageSize, 1)
        XCTAssertEqual(plan.k1, shape.headDim)
        XCTAssertEqual(big.afterPrefill.storedTokens, L * H * 1000)
        XCTAssertEqual(big.steps.last!.storedTokens, L * H * (1000 + newTokens))
        XCTAssertEqual(big.tokens, full.tokens)

        let half = try generate("rocket", budget: 1024, prompt: prompt, newTokens: newTokens)
        let halfPlan = try XCTUnwrap(half.plan)
        print("rocket plan (budget 1024): \(halfPlan)")
        XCTAssertEqual(halfPlan.k2, 512)
        XCTAssertEqual(half.afterPrefill.storedTokens, L * H * 1000)   // B_p = 1000: nothing evicted
        let n = 1000 + newTokens
        XCTAssertEqual(half.steps.last!.bytesReadLastStep, L * H * (shape.headDim * n * 2 + 512 * 2 * shape.headDim * 2))
    }

    func testRocketMTAndHSAOnTheModel() throws {
        let prompt = try Self.prompt(1000), newTokens = 6
        let shape = Self.model.config.attentionShape
        let L = shape.layers, H = shape.kvHeads
        let mt = try generate("rocket-mt", budget: 128, prompt: prompt, newTokens: newTokens)
        let hsa = try generate("hsa", budget: 128, prompt: prompt, newTokens: newTokens)
        print("rocket-mt plan: \(mt.plan!)")
        print("hsa plan: \(hsa.plan!)")
        XCTAssertEqual(mt.steps.last!.storedTokens, L * H * (1000 + newTokens))
        XCTAssertEqual(hsa.steps.last!.storedTokens, L * H * (1000 + newTokens))
        let p = hsa.plan!, n = 1000 + newTokens
        XCTAssertEqual(hsa.steps.last!.bytesReadLastStep,
                       L * H * (p.k1 * ((n + p.pageSize - 1) / p.pageSize) * 2 + p.k2 * 2 * shape.headDim * 2))
        print(String(format: "rocket-mt: stored %.2f MiB, read %.3f MiB/step; hsa: stored %.2f MiB, read %.3f MiB/step",
                     Double(mt.steps.last!.storedBytes) / 1048576, Double(mt.steps.last!.bytesReadLastStep) / 1048576,
                     Double(hsa.steps.last!.storedBytes) / 1048576, Double(hsa.steps.last!.bytesReadLastStep) / 1048576))
    }
}
