import Foundation

/// What a sweep runs; written to `DIR/config.json` so results carry their configuration.
public struct EvalSettings: Codable, Sendable, Equatable {
    public var task: String
    public var methods: [String]
    public var budgets: [Int]
    /// Prompt lengths in tokens (with BOS).
    public var lengths: [Int]
    /// Needle depths (passkey).
    public var depths: [Double]
    public var samples: Int
    public var seed: UInt64
    /// Tokens generated per answer (greedy).
    public var maxTokens: Int
    /// `N_new` the budget split plans for (the paper's 128), independent of how many tokens are generated.
    public var planNewTokens: Int
    /// Teacher-forced tokens scored per fidelity prompt.
    public var continuation: Int
    public var haystack: String
    public var kvOptions: [String: String]
    public var model: String

    public init(task: String, methods: [String], budgets: [Int], lengths: [Int], depths: [Double], samples: Int, seed: UInt64,
                maxTokens: Int, planNewTokens: Int, continuation: Int, haystack: String, kvOptions: [String: String], model: String) {
        self.task = task
        self.methods = methods
        self.budgets = budgets
        self.lengths = lengths
        self.depths = depths
        self.samples = samples
        self.seed = seed
        self.maxTokens = maxTokens
        self.planNewTokens = planNewTokens
        self.continuation = continuation
        self.haystack = haystack
        self.kvOptions = kvOptions
        self.model = model
    }

    /// Each method once per budget; methods without a budget once.
    public func runs() throws -> [(method: String, budget: Int?)] {
        var runs: [(String, Int?)] = []
        for name in methods {
            let method = try KVMethods.named(name)
            if method.needsBudget {
                guard !budgets.isEmpty else { throw KVMethodError("method \(name) needs at least one budget") }
                runs += budgets.map { (name, $0) }
            } else {
                runs.append((name, nil))
            }
        }
        return runs
    }
}

/// Runs the evaluation tasks: one dense prefill per prompt, replayed into every method and budget.
public final class Evaluator {
    /// The model and the pool every prefill, replay and decode of the sweep runs on.
    public let engine: Engine
    public var model: LanguageModel { engine.model }
    public let tokenizer: Tokenizer
    public let settings: EvalSettings
    public let store: EvalStore
    /// Called after each prompt × method × budget with (done, total) and a short label.
    public var onProgress: (Int, Int, String) -> Void = { _, _, _ in }

    public init(engine: Engine, tokenizer: Tokenizer, settings: EvalSettings, store: EvalStore) throws {
        let model = engine.model
        for budget in settings.budgets where budget < 16 { throw KVMethodError("budget \(budget) is below the minimum of 16 tokens") }
        let room = max(128, settings.maxTokens, settings.continuation)
        for length in settings.lengths where length < 64 || length + room > model.config.contextLength {
            throw InferenceError("length \(length) must be ≥ 64 and leave room for \(room) generated tokens in the context of \(model.config.contextLength)")
        }
        guard settings.samples >= 1 else { throw InferenceError("samples must be ≥ 1") }
        self.engine = engine
        self.tokenizer = tokenizer
        self.settings = settings
        self.store = store
        _ = try settings.runs()
    }

    /// Needle in a haystack: lengths × depths × samples, scored by exact and partial match of the key.
    public func runPasskey(haystack: Haystack) throws {
        for depth in settings.depths where !(0...1).contains(depth) { throw InferenceError("depth \(depth) is outside [0, 1]") }
        var prompts: [GenerationPrompt] = []
        for length in settings.lengths {
            for (depthIndex, depth) in settings.depths.enumerated() {
                for sample in 0..<settings.samples {
                    prompts.append(GenerationPrompt(cell: Cell(task: "passkey", length: length, depth: depth, sample: sample)) { [settings, tokenizer] in
                        var rng = Xoshiro256StarStar(seed: settings.seed &+ UInt64(length) &* 1_000_003 &+ UInt64(depthIndex) &* 10_007 &+ UInt64(sample))
                        let key = Passkey.randomKey(using: &rng)
                        let prompt = Passkey.prompt(haystack: haystack, tokens: length, depth: depth, key: key, tokenizer: tokenizer)
                        return (prompt.tokens, key, settings.maxTokens, { output in
                            (Passkey.exactMatch(response: output, key: key), Passkey.partialMatch(response: output, key: key))
                        })
                    })
                }
            }
        }
        try runGeneration(prompts)
    }

    /// RULER-style tasks (`Ruler.tasks`, or the given subset) at every length, `samples` prompts each;
    /// predictions are stored under the task name `ruler/<task>`.
    public func runRuler(haystack: Haystack, tasks: [String] = Ruler.tasks) throws {
        var prompts: [GenerationPrompt] = []
        for length in settings.lengths {
            for (taskIndex, task) in tasks.enumerated() {
                guard Ruler.tasks.contains(task) else { throw InferenceError("unknown RULER task '\(task)'; available: \(Ruler.tasks.joined(separator: ", "))") }
                for sample in 0..<settings.samples {
                    prompts.append(GenerationPrompt(cell: Cell(task: "ruler/\(task)", length: length, depth: nil, sample: sample)) { [settings, tokenizer] in
                        var rng = Xoshiro256StarStar(seed: settings.seed &+ UInt64(length) &* 1_000_003 &+ UInt64(taskIndex) &* 10_007 &+ UInt64(sample))
                        let item = try Ruler.sample(task: task, haystack: haystack, tokens: length, tokenizer: tokenizer, using: &rng)
                        let tokens = tokenizer.encode(item.prompt, addSpecial: true, parseSpecial: false)
                        return (tokens, item.answers.joined(separator: ", "), item.maxTokens, { (Ruler.score(output: $0, answers: item.answers), nil) })
                    })
                }
            }
        }
        try runGeneration(prompts)
    }

    /// SCBench-style shared-context sessions: essay text with `turns` key-value needles, then `turns` questions,
    /// each asking for a different key in a new turn of the same sequence (the cache carries over; `rocket-mt`
    /// re-selects from the full history each turn, `rocket` re-compresses what it kept). Score: fraction of
    /// turns whose answer contains the value.
    public func runMultiturn(haystack: Haystack, turns: Int = 4) throws {
        let cells = settings.lengths.flatMap { length in
            (0..<settings.samples).map { Cell(task: "multiturn", length: length, depth: nil, sample: $0) }
        }
        try sweep(cells, runs: try settings.runs()) { _, cell, pending, stored in
            var rng = Xoshiro256StarStar(seed: settings.seed &+ UInt64(cell.length) &* 1_000_003 &+ UInt64(cell.sample) &+ 77)
            let session = MultiturnSession.make(haystack: haystack, tokens: cell.length, turns: turns, tokenizer: tokenizer, using: &rng)
            let snapshot = try engine.prefillSnapshot(session.firstPrompt)
            for run in pending {
                let policy = try makePolicy(run, promptLength: session.firstPrompt.count)
                snapshot.replay(into: policy)
                let generator = Generator(session: snapshot.session(model: model, policy: policy), tokenizer: tokenizer)
                // An answer ends at its line; it stays in the history the next turn sees.
                var options = GenerationOptions()
                options.maxTokens = 12
                options.stopStrings = ["\n"]
                var result = try generator.generate(after: snapshot.lastLogits, options: options)
                var outputs = [result.text]
                for question in session.laterQuestions {
                    // The last sampled token of a turn (cut by length or a stop string) has not been fed yet.
                    let carried = result.stopReason == .endOfGeneration ? [] : Array(result.tokens.suffix(1))
                    result = try generator.generate(prompt: carried + question, options: options)
                    outputs.append(result.text)
                }
                let hits = zip(outputs, session.values).filter { $0.0.contains($0.1) }.count
                try store.append(EvalPrediction(task: cell.task, method: run.method, budget: run.budget, length: cell.length, depth: nil,
                                                sample: cell.sample, output: outputs.joined(separator: " | "),
                                                expected: session.values.joined(separator: " | "),
                                                score: Double(hits) / Double(outputs.count),
                                                promptTokens: session.firstPrompt.count, statistics: policy.statistics))
                stored()
            }
        }
    }

    /// One prompt position of a sweep: task, length, depth (passkey) and sample.
    private struct Cell {
        let task: String, length: Int, depth: Double?, sample: Int
        var label: String { "\(task) \(length) tokens" + (depth.map { ", depth \($0)" } ?? "") + ", sample \(sample)" }
        func id(_ run: (method: String, budget: Int?)) -> String {
            EvalPrediction.id(task: task, method: run.method, budget: run.budget, length: length, depth: depth, sample: sample)
        }
    }

    /// Visits every cell whose runs are not all in the store yet (with its index and those runs) and keeps
    /// the progress count: `body` calls its last argument after storing each prediction.
    private func sweep(_ cells: [Cell], runs: [(method: String, budget: Int?)],
                       _ body: (Int, Cell, [(method: String, budget: Int?)], () -> Void) throws -> Void) throws {
        let total = cells.count * runs.count
        var done = 0
        for (index, cell) in cells.enumerated() {
            let pending = runs.filter { !store.contains(cell.id($0)) }
            done += runs.count - pending.count
            guard !pending.isEmpty else { continue }
            onProgress(done, total, "\(cell.label): prefill")
            try body(index, cell, pending) {
                done += 1
                onProgress(done, total, cell.label)
            }
        }
    }

    /// One prompt of a generation sweep, built only when some of its runs are still to do.
    private struct GenerationPrompt {
        let cell: Cell
        /// Prompt tokens, expected answer, tokens to generate, and the scorer (score, partial score).
        let make: () throws -> ([Int], String, Int, (String) -> (Double, Double?))
    }

    private func runGeneration(_ prompts: [GenerationPrompt]) throws {
        try sweep(prompts.map(\.cell), runs: try settings.runs()) { index, cell, pending, stored in
            let (tokens, expected, maxTokens, score) = try prompts[index].make()
            let snapshot = try engine.prefillSnapshot(tokens)
            for run in pending {
                let (text, stats) = try generate(from: snapshot, run: run, maxTokens: maxTokens)
                let (value, partial) = score(text)
                var prediction = EvalPrediction(task: cell.task, method: run.method, budget: run.budget, length: cell.length,
                                                depth: cell.depth, sample: cell.sample, output: text, expected: expected, score: value,
                                                promptTokens: tokens.count, statistics: stats)
                prediction.partial = partial
                try store.append(prediction)
                stored()
            }
        }
    }

    /// Teacher-forced continuation of real text: per method and budget, top-1 agreement with `full` and
    /// KL(full ‖ method) of the next-token distributions, plus the method's perplexity on the true tokens.
    public func runFidelity(text haystack: Haystack) throws {
        var runs = try settings.runs()
        runs.removeAll { $0.method == "full" }
        runs.insert(("full", nil), at: 0)  // the reference, always computed first
        let cells = settings.lengths.flatMap { length in
            (0..<settings.samples).map { Cell(task: "fidelity", length: length, depth: nil, sample: $0) }
        }
        try sweep(cells, runs: runs) { _, cell, pending, stored in
            // Sample s starts s·3000 words into the corpus, so samples read different essays.
            let length = cell.length, wordCount = length + settings.continuation
            let words = (0..<wordCount).map { haystack.words[(cell.sample * 3000 + $0) % haystack.words.count] }
            let all = Array(tokenizer.encode(words.joined(separator: " "), addSpecial: true, parseSpecial: false).prefix(wordCount))
            let prompt = Array(all[..<length]), target = Array(all[length...])
            let snapshot = try engine.prefillSnapshot(prompt)
            let reference = try teacherForced(snapshot: snapshot, run: ("full", nil), target: target)
            for run in pending {
                let result = run.method == "full" ? reference : try teacherForced(snapshot: snapshot, run: run, target: target)
                var agree = 0.0, kl = 0.0, nll = 0.0
                for step in 0..<target.count {
                    let comparison = NextTokenComparison(reference: reference.logits[step], candidate: result.logits[step], target: target[step])
                    agree += comparison.sameTop1 ? 1 : 0
                    kl += comparison.kl
                    nll += comparison.negativeLogLikelihood
                }
                let n = Double(target.count)
                var prediction = EvalPrediction(task: cell.task, method: run.method, budget: run.budget, length: length, depth: nil,
                                                sample: cell.sample, output: tokenizer.decode(result.logits.map { $0.withUnsafeBufferPointer(Sampler.argmax) }),
                                                expected: tokenizer.decode(target), score: agree / n,
                                                promptTokens: prompt.count, statistics: result.statistics)
                prediction.kl = kl / n
                prediction.nll = nll / n
                try store.append(prediction)
                stored()
            }
        }
    }

    /// The method's policy with the options it has (the fidelity reference `full` runs plain beside a tuned `rocket`).
    private func makePolicy(_ run: (method: String, budget: Int?), promptLength: Int) throws -> KVPolicy {
        try KVMethods.make(run.method, context: KVMethodContext(
            layers: model.config.layerAttention, budget: run.budget, promptLength: promptLength,
            maxNewTokens: settings.planNewTokens, options: try KVMethods.options(settings.kvOptions, for: run.method)))
    }

    /// Greedy answer of one method from a replayed prompt.
    private func generate(from snapshot: PrefillSnapshot, run: (method: String, budget: Int?), maxTokens: Int) throws -> (String, KVStatistics) {
        let policy = try makePolicy(run, promptLength: snapshot.tokens.count)
        snapshot.replay(into: policy)
        let generator = Generator(session: snapshot.session(model: model, policy: policy), tokenizer: tokenizer)
        var options = GenerationOptions()
        options.maxTokens = maxTokens
        let result = try generator.generate(after: snapshot.lastLogits, options: options)
        return (result.text, policy.statistics)
    }

    /// The next-token logits of one method at every position of `target`, feeding the true tokens.
    private func teacherForced(snapshot: PrefillSnapshot, run: (method: String, budget: Int?),
                               target: [Int]) throws -> (logits: [[Float]], statistics: KVStatistics) {
        let policy = try makePolicy(run, promptLength: snapshot.tokens.count)
        snapshot.replay(into: policy)
        let session = snapshot.session(model: model, policy: policy)
        var logits = [snapshot.lastLogits]
        for token in target.dropLast() { logits.append(Array(try session.decode(token))) }
        return (logits, policy.statistics)
    }
}

/// How one next-token distribution compares with the reference one.
public struct NextTokenComparison {
    public let sameTop1: Bool
    /// KL(reference ‖ candidate) in nats.
    public let kl: Double
    /// −log p_candidate(target).
    public let negativeLogLikelihood: Double

    public init(reference: [Float], candidate: [Float], target: Int) {
        let logP = Self.logSoftmax(reference), logQ = Self.logSoftmax(candidate)
        var kl = 0.0
        for i in 0..<logP.count where logP[i] > -60 { kl += exp(logP[i]) * (logP[i] - logQ[i]) }
        self.kl = max(0, kl)
        negativeLogLikelihood = -logQ[target]
        sameTop1 = reference.withUnsafeBufferPointer(Sampler.argmax) == candidate.withUnsafeBufferPointer(Sampler.argmax)
    }

    static func logSoftmax(_ logits: [Float]) -> [Double] {
        let m = Double(logits.max() ?? 0)
        let sum = logits.reduce(0.0) { $0 + exp(Double($1) - m) }
        let logZ = m + log(sum)
        return logits.map { Double($0) - logZ }
    }
}
