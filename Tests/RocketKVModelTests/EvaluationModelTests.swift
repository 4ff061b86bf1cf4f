import Foundation
import RocketKV
import XCTest

/// The evaluation harness on the real model: replaying a recorded prefill is the same as prefilling, and a
/// small sweep with a known answer scores, stores, resumes and reports as it should.
final class EvaluationModelTests: XCTestCase {
    func testMultiturnSessionHidesOneNeedlePerQuarterAndAsksEachOnce() throws {
        let tokenizer = try Tokenizer(gguf: TestModel.file)
        var rng = Xoshiro256StarStar(seed: 42)
        let session = MultiturnSession.make(haystack: try Haystack.paulGraham(), tokens: 2048, turns: 4, tokenizer: tokenizer, using: &rng)
        XCTAssertLessThanOrEqual(session.firstPrompt.count, 2048 - 40 * 3)
        XCTAssertGreaterThan(session.firstPrompt.count, 2048 - 40 * 3 - 30)
        XCTAssertEqual(session.laterQuestions.count, 3)
        XCTAssertEqual(Set(session.values).count, 4)
        let text = tokenizer.decode(session.firstPrompt)
        // Each value sits in its own quarter of the prompt, once.
        let offsets = session.values.map { value -> Double in
            XCTAssertEqual(text.components(separatedBy: value).count, 2, value)
            return Double(text.distance(from: text.startIndex, to: text.range(of: value)!.lowerBound)) / Double(text.count)
        }
        XCTAssertEqual(Set(offsets.map { Int($0 * 4) }).count, 4, "\(offsets)")
        // Every turn asks for the key of the value it expects: the needle sentence names that key.
        let questions = [text] + session.laterQuestions.map { tokenizer.decode($0) }
        for (question, value) in zip(questions, session.values) {
            let key = question.components(separatedBy: "special magic number for ").last!.components(separatedBy: " ").first!
            XCTAssertTrue(text.contains("One of the special magic numbers for \(key) is: \(value)."), "\(key) -> \(value)")
        }
    }

    func testReplayedPrefillGeneratesLikeADirectPrefill() throws {
        let engine = try Engine(file: TestModel.file), model = engine.model
        let tokenizer = try Tokenizer(gguf: TestModel.file)
        let prompt = Passkey.prompt(haystack: try Haystack.paulGraham(), tokens: 700, depth: 0.3, key: "5550123", tokenizer: tokenizer)
        XCTAssertLessThanOrEqual(prompt.tokens.count, 700)
        XCTAssertGreaterThan(prompt.tokens.count, 680)
        let snapshot = try engine.prefillSnapshot(prompt.tokens, chunkSize: 256)
        var options = GenerationOptions()
        options.maxTokens = 10
        for (method, budget) in [("full", nil), ("rocket", 64), ("snapkv", 64), ("h2o", 64), ("quest", 64)] as [(String, Int?)] {
            let context = KVMethodContext(shape: model.config.attentionShape, budget: budget, promptLength: prompt.tokens.count, maxNewTokens: 128)
            let directPolicy = try KVMethods.make(method, context: context)
            let direct = Generator(session: engine.session(policy: directPolicy), tokenizer: tokenizer)
            direct.session.chunkSize = 256
            let expected = try direct.generate(prompt: prompt.tokens, options: options)

            let replayPolicy = try KVMethods.make(method, context: context)
            snapshot.replay(into: replayPolicy)
            let replayed = try Generator(session: snapshot.session(model: model, policy: replayPolicy), tokenizer: tokenizer)
                .generate(after: snapshot.lastLogits, options: options)
            XCTAssertEqual(replayed.tokens, expected.tokens, method)
            XCTAssertEqual(replayPolicy.statistics, directPolicy.statistics, method)
        }
    }

    func testSmokeSweepScoresStoresAndResumes() throws {
        let engine = try Engine(file: TestModel.file), model = engine.model
        let tokenizer = try Tokenizer(gguf: TestModel.file)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("eval-smoke-\(UUID().uuidString)")
        let settings = EvalSettings(task: "passkey", methods: ["full", "rocket", "streaming"], budgets: [64], lengths: [1024],
                                    depths: [0.5], samples: 1, seed: 7, maxTokens: 12, planNewTokens: 128, continuation: 16,
                                    haystack: "paul-graham-essays", kvOptions: [:], model: model.config.name)
        var calls = 0
        do {
            let evaluator = try Evaluator(engine: engine, tokenizer: tokenizer, settings: settings, store: try EvalStore(folder: folder))
            evaluator.onProgress = { _, total, _ in calls += 1; XCTAssertEqual(total, 3) }
            try evaluator.runPasskey(haystack: try Haystack.paulGraham())
            let byMethod = Dictionary(uniqueKeysWithValues: evaluator.store.predictions.map { ($0.method, $0) })
            // A 1K-token needle in the middle: the full cache answers (as llama.cpp does); the 64-token
            // StreamingLLM window cannot see the needle, so it cannot.
            XCTAssertEqual(byMethod["full"]?.score, 1, byMethod["full"]?.output ?? "")
            XCTAssertEqual(byMethod["full"]?.partial, 1)
            XCTAssertEqual(byMethod["streaming"]?.score, 0, byMethod["streaming"]?.output ?? "")
            XCTAssertEqual(byMethod["rocket"]?.expected, byMethod["full"]?.expected)
            XCTAssertLessThan(byMethod["rocket"]!.kvReadBytesPerStep * 4, byMethod["full"]!.kvReadBytesPerStep)
            print("smoke: " + evaluator.store.predictions.map { "\($0.method) \($0.score) '\($0.output)'" }.joined(separator: "; "))
        }
        let lines = try String(contentsOf: folder.appendingPathComponent("predictions.jsonl"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 3)
        // Re-running with the same folder finds every cell done and runs nothing.
        let again = try Evaluator(engine: engine, tokenizer: tokenizer, settings: settings, store: try EvalStore(folder: folder))
        var reran = false
        again.onProgress = { _, _, label in reran = reran || label.contains("prefill") }
        try again.runPasskey(haystack: try Haystack.paulGraham())
        XCTAssertFalse(reran)
        XCTAssertEqual(again.store.predictions.count, 3)
        XCTAssertGreaterThan(calls, 0)

        // Fidelity: topk with a budget above the prompt is exactly full; rocket at 64 is not.
        var fidelity = settings
        fidelity.task = "fidelity"
        fidelity.methods = ["topk", "rocket"]
        fidelity.budgets = [64, 2048]
        fidelity.lengths = [512]
        let evaluator = try Evaluator(engine: engine, tokenizer: tokenizer, settings: fidelity, store: try EvalStore(folder: folder))
        try evaluator.runFidelity(text: try Haystack.paulGraham())
        let rows = evaluator.store.predictions.filter { $0.task == "fidelity" }
        func row(_ m: String, _ b: Int?) -> EvalPrediction { rows.first { $0.method == m && $0.budget == b }! }
        XCTAssertEqual(rows.count, 5)
        XCTAssertEqual(row("full", nil).score, 1)
        XCTAssertEqual(row("full", nil).kl!, 0, accuracy: 1e-9)
        XCTAssertEqual(row("topk", 2048).score, 1)
        XCTAssertEqual(row("topk", 2048).kl!, 0, accuracy: 1e-6)
        XCTAssertEqual(row("topk", 2048).nll!, row("full", nil).nll!, accuracy: 1e-6)
        XCTAssertGreaterThan(row("rocket", 64).kl!, 1e-4)
        print("fidelity: " + rows.map { "\($0.method)@\($0.budget ?? 0) agree \($0.score) kl \($0.kl!) ppl \(exp($0.nll!))" }.joined(separator: "; "))
        // Multi-turn: four questions in four turns of one sequence; topk with a budget above everything it
        // holds must answer exactly as full does, turn after turn.
        var multiturn = settings
        multiturn.task = "multiturn"
        multiturn.methods = ["full", "topk", "rocket-mt"]
        multiturn.budgets = [2048]
        multiturn.lengths = [512]
        let turns = try Evaluator(engine: engine, tokenizer: tokenizer, settings: multiturn, store: try EvalStore(folder: folder))
        try turns.runMultiturn(haystack: try Haystack.paulGraham(), turns: 4)
        let sessions = turns.store.predictions.filter { $0.task == "multiturn" }
        XCTAssertEqual(sessions.count, 3)
        for p in sessions {
            XCTAssertEqual(p.output.components(separatedBy: " | ").count, 4)
            XCTAssertEqual(p.expected.components(separatedBy: " | ").count, 4)
        }
        let fullSession = sessions.first { $0.method == "full" }!, topkSession = sessions.first { $0.method == "topk" }!
        XCTAssertEqual(topkSession.output, fullSession.output)
        XCTAssertEqual(topkSession.score, fullSession.score)
        print("multiturn: " + sessions.map { "\($0.method) \($0.score) '\($0.output)'" }.joined(separator: "; "))

        let html = EvalReport.html(predictions: evaluator.store.predictions, settings: ["passkey": [settings], "fidelity": [fidelity]])
        XCTAssertTrue(html.contains("<svg") && html.contains("fidelity"))
    }
}
