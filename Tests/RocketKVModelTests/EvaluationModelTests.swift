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
            let byMethod = Dictionary(uniqueKeysWithValues: evaluator.store!.predictions.map { ($0.method, $0) })
            // A 1K-token needle in the middle: the full cache answers (as llama.cpp does); the 64-token
            // StreamingLLM window cannot see the needle, so it cannot.
            XCTAssertEqual(byMethod["full"]?.score, 1, byMethod["full"]?.output ?? "")
            XCTAssertEqual(byMethod["full"]?.partial, 1)
            XCTAssertEqual(byMethod["streaming"]?.score, 0, byMethod["streaming"]?.output ?? "")
            XCTAssertEqual(byMethod["rocket"]?.expected, byMethod["full"]?.expected)
            XCTAssertLessThan(byMethod["rocket"]!.kvReadBytesPerStep * 4, byMethod["full"]!.kvReadBytesPerStep)
            print("smoke: " + evaluator.store!.predictions.map { "\($0.method) \($0.score) '\($0.output)'" }.joined(separator: "; "))
        }
        let lines = try String(contentsOf: folder.appendingPathComponent("predictions.jsonl"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 3)
        // Re-running with the same folder finds every cell done and runs nothing.
        let again = try Evaluator(engine: engine, tokenizer: tokenizer, settings: settings, store: try EvalStore(folder: folder))
        var reran = false
        again.onProgress = { _, _, label in reran = reran || label.contains("prefill") }
        try again.runPasskey(haystack: try Haystack.paulGraham())
        XCTAssertFalse(reran)
        XCTAssertEqual(again.store!.predictions.count, 3)
        XCTAssertGreaterThan(calls, 0)

        // Fidelity: topk with a budget above the prompt is exactly full; rocket at 64 is not.
        var fidelity = settings
        fidelity.task = "fidelity"
        fidelity.methods = ["topk", "rocket"]
        fidelity.budgets = [64, 2048]
        fidelity.lengths = [512]
        let evaluator = try Evaluator(engine: engine, tokenizer: tokenizer, settings: fidelity, store: try EvalStore(folder: folder))
        try evaluator.runFidelity(text: try Haystack.paulGraham())
        let rows = evaluator.store!.predictions.filter { $0.task == "fidelity" }
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
        try turns.runMultiturn(haystack: try Haystack.paulGraham())
        let sessions = turns.store!.predictions.filter { $0.task == "multiturn" }
        XCTAssertEqual(sessions.count, 3)
        for p in sessions {
            XCTAssertEqual(p.output.components(separatedBy: " | ").count, 4)
            XCTAssertEqual(p.expected.components(separatedBy: " | ").count, 4)
        }
        let fullSession = sessions.first { $0.method == "full" }!, topkSession = sessions.first { $0.method == "topk" }!
        XCTAssertEqual(topkSession.output, fullSession.output)
        XCTAssertEqual(topkSession.score, fullSession.score)
        print("multiturn: " + sessions.map { "\($0.method) \($0.score) '\($0.output)'" }.joined(separator: "; "))

        let html = EvalReport.html(predictions: evaluator.store!.predictions, settings: ["passkey": [settings], "fidelity": [fidelity]])
        XCTAssertTrue(html.contains("<svg") && html.contains("fidelity"))
    }

    /// `--prompts-out`: the evaluator hands over each prompt of the sweep and runs no model; the exported tokens are
    /// the ones the sweep answers (greedy full-cache generation from them gives the sweep's `full` output), the
    /// answers are what the scorer looks for, and multiturn (whose later turns depend on answers) is refused.
    func testExportedPromptsAreTheTokensTheSweepAnswers() throws {
        let engine = try Engine(file: TestModel.file), model = engine.model
        let tokenizer = try Tokenizer(gguf: TestModel.file)
        let haystack = try Haystack.paulGraham()
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("eval-prompts-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        var settings = EvalSettings(task: "ruler", methods: ["full"], budgets: [64], lengths: [768], depths: [0.5], samples: 1, seed: 5,
                                    maxTokens: 8, planNewTokens: 128, continuation: 6, haystack: "paul-graham-essays", kvOptions: [:],
                                    model: model.config.name)
        func exported(_ settings: EvalSettings, run: (Evaluator) throws -> Void) throws -> [EvalPromptRecord] {
            var records: [EvalPromptRecord] = []
            var prefilled = false
            let evaluator = try Evaluator(engine: engine, tokenizer: tokenizer, settings: settings) { records.append($0) }
            evaluator.onProgress = { _, _, label in prefilled = prefilled || label.contains("prefill") }
            try run(evaluator)
            XCTAssertFalse(prefilled)
            XCTAssertEqual(evaluator.computed, 0)
            return records
        }
        let tasks = ["niah_single", "cwe"]
        let prompts = try exported(settings) { try $0.runRuler(haystack: haystack, tasks: tasks) }
        XCTAssertEqual(prompts.map(\.task), tasks.map { "ruler/\($0)" })
        XCTAssertEqual(prompts.map(\.prompt), [0, 1])

        let evaluator = try Evaluator(engine: engine, tokenizer: tokenizer, settings: settings, store: try EvalStore(folder: root.appendingPathComponent("sweep")))
        try evaluator.runRuler(haystack: haystack, tasks: tasks)
        for (record, prediction) in zip(prompts, evaluator.store!.predictions) {
            XCTAssertEqual(record.task, prediction.task)
            XCTAssertEqual(record.tokens.count, prediction.promptTokens)
            XCTAssertEqual(record.answers.joined(separator: ", "), prediction.expected)
            // The sweep's protocol (§2.2): the last prompt token is the first decode step.
            let session = engine.session(policy: try KVMethods.make("full", context: KVMethodContext(
                shape: model.config.attentionShape, budget: nil, promptLength: record.tokens.count - 1, maxNewTokens: 128)))
            _ = try session.prefill(Array(record.tokens.dropLast()))
            let first = Array(try session.decode(record.tokens.last!))
            var options = GenerationOptions()
            options.maxTokens = record.maxTokens
            let direct = try Generator(session: session, tokenizer: tokenizer).generate(after: first, options: options)
            XCTAssertEqual(direct.text, prediction.output, record.task)
        }
        XCTAssertTrue(tokenizer.decode(prompts[0].tokens).contains(prompts[0].answers[0]), "the needle's value is in the prompt")

        settings.task = "passkey"
        let passkeys = try exported(settings) { try $0.runPasskey(haystack: haystack) }
        XCTAssertEqual(passkeys.count, 1)
        XCTAssertEqual(passkeys[0].depth, 0.5)
        XCTAssertEqual(passkeys[0].maxTokens, 8)
        XCTAssertEqual(passkeys[0].answers.count, 1)
        XCTAssertTrue(tokenizer.decode(passkeys[0].tokens).contains("The pass key is \(passkeys[0].answers[0])"))

        settings.task = "fidelity"
        let texts = try exported(settings) { try $0.runFidelity(text: haystack) }
        XCTAssertEqual(texts.count, 1)
        XCTAssertEqual(texts[0].tokens.count, 768)
        XCTAssertEqual(texts[0].continuation?.count, 6)
        XCTAssertEqual(texts[0].maxTokens, 6)

        settings.task = "multiturn"
        settings.lengths = [512]
        XCTAssertThrowsError(try exported(settings) { try $0.runMultiturn(haystack: haystack) })
    }

    /// §2.2 hold-back: the snapshot is of the prompt without its last token; that token is each method's first
    /// decode step. Replaying still equals prefilling directly, and the first answer token now depends on the
    /// method's cache (rocket at 64 sees other logits than full), while full's equals the dense prefill's choice.
    func testHeldBackLastTokenIsTheFirstDecodeStepOfEveryMethod() throws {
        let engine = try Engine(file: TestModel.file), model = engine.model
        let tokenizer = try Tokenizer(gguf: TestModel.file)
        let prompt = Passkey.prompt(haystack: try Haystack.paulGraham(), tokens: 700, depth: 0.6, key: "7215904", tokenizer: tokenizer).tokens
        let heldBack = prompt.last!, prefix = Array(prompt.dropLast())
        let snapshot = try engine.prefillSnapshot(prefix, chunkSize: 256)
        XCTAssertEqual(snapshot.tokens, prefix)
        var options = GenerationOptions()
        options.maxTokens = 8
        var firstLogits: [String: [Float]] = [:]
        for (method, budget) in [("full", nil), ("rocket", 64), ("snapkv", 64)] as [(String, Int?)] {
            let context = KVMethodContext(shape: model.config.attentionShape, budget: budget, promptLength: prefix.count, maxNewTokens: 128)
            let directPolicy = try KVMethods.make(method, context: context)
            let direct = engine.session(policy: directPolicy)
            direct.chunkSize = 256
            _ = try direct.prefill(prefix)
            let directLogits = Array(try direct.decode(heldBack))
            let expected = try Generator(session: direct, tokenizer: tokenizer).generate(after: directLogits, options: options)

            let replayPolicy = try KVMethods.make(method, context: context)
            snapshot.replay(into: replayPolicy)
            let session = snapshot.session(model: model, policy: replayPolicy)
            let logits = Array(try session.decode(heldBack))
            XCTAssertEqual(logits, directLogits, method)
            let replayed = try Generator(session: session, tokenizer: tokenizer).generate(after: logits, options: options)
            XCTAssertEqual(replayed.tokens, expected.tokens, method)
            XCTAssertEqual(replayPolicy.statistics, directPolicy.statistics, method)
            firstLogits[method] = logits
        }
        XCTAssertNotEqual(firstLogits["rocket"], firstLogits["full"], "the first answer token goes through rocket's compressed cache")
        let dense = try engine.prefillSnapshot(prompt, chunkSize: 256).lastLogits
        XCTAssertEqual(firstLogits["full"]!.withUnsafeBufferPointer(Sampler.argmax), dense.withUnsafeBufferPointer(Sampler.argmax))
    }

    /// Two shards of two sweeps (passkey, then fidelity), merged, give the unsharded folder byte for byte; merging
    /// refuses a shard run with other settings and an incomplete set of shards.
    func testShardedSweepsMergeIntoTheUnshardedRun() throws {
        let engine = try Engine(file: TestModel.file)
        let tokenizer = try Tokenizer(gguf: TestModel.file)
        let haystack = try Haystack.paulGraham()
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("eval-shards-\(UUID().uuidString)")
        let passkey = EvalSettings(task: "passkey", methods: ["full", "streaming"], budgets: [64], lengths: [512], depths: [0, 0.5, 1],
                                   samples: 1, seed: 3, maxTokens: 4, planNewTokens: 128, continuation: 8, haystack: "paul-graham-essays",
                                   kvOptions: [:], model: engine.model.config.name)
        var fidelity = passkey
        fidelity.task = "fidelity"
        fidelity.samples = 3
        func sweep(_ settings: EvalSettings, into folder: URL) throws {
            let (configurations, index) = EvalFolder.adding(settings, to: try EvalFolder.configurations(in: folder))
            let store = try EvalStore(folder: folder)
            let evaluator = try Evaluator(engine: engine, tokenizer: tokenizer, settings: settings, store: store)
            evaluator.sweepIndex = index
            if settings.task == "passkey" { try evaluator.runPasskey(haystack: haystack) } else { try evaluator.runFidelity(text: haystack) }
            try EvalFolder.writeSummaries(store, configurations: configurations)
        }
        func sharded(_ settings: EvalSettings, _ shard: String) -> EvalSettings { var s = settings; s.shard = EvalShard(shard)!; return s }
        let whole = root.appendingPathComponent("whole"), merged = root.appendingPathComponent("merged")
        let shards = [root.appendingPathComponent("shard0"), root.appendingPathComponent("shard1")]
        for settings in [passkey, fidelity] {
            try sweep(settings, into: whole)
            for (i, folder) in shards.enumerated() { try sweep(sharded(settings, "\(i)/2"), into: folder) }
        }
        // Shard 0 of 2 holds prompts 0 and 2 of each sweep (3 prompts), 2 runs each.
        XCTAssertEqual(try EvalStore.read(shards[0].appendingPathComponent("predictions.jsonl")).count, 2 * 2 + 2 * 2)
        try EvalFolder.merge(shards, into: merged)
        for name in ["predictions.jsonl", "config.json", "metrics.json", "report.html"] {
            XCTAssertEqual(try Data(contentsOf: merged.appendingPathComponent(name)), try Data(contentsOf: whole.appendingPathComponent(name)), name)
        }
        XCTAssertThrowsError(try EvalFolder.merge([shards[0]], into: root.appendingPathComponent("half"))) {
            XCTAssertTrue("\($0)".contains("1/2"), "\($0)")
        }
        let other = root.appendingPathComponent("other-seed")
        var reseeded = sharded(passkey, "1/2")
        reseeded.seed = 4
        try sweep(reseeded, into: other)
        try sweep(sharded(fidelity, "1/2"), into: other)
        XCTAssertThrowsError(try EvalFolder.merge([shards[0], other], into: root.appendingPathComponent("mixed"))) {
            XCTAssertTrue("\($0)".contains("other settings"), "\($0)")
        }
    }
}
