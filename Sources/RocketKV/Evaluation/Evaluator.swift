import Foundation

/// Where a single-turn prompt's first answer token comes from (spec §2.2).
public enum FirstTokenSource: String, Codable, Sendable, CaseIterable {
    /// The last prompt token is held back and fed as the first decode step, so the first answer token goes
    /// through the method's compressed cache ([A], how the paper's accuracy numbers were produced).
    case compressed
    /// The whole prompt is prefilled densely and the first answer token comes from the prefill logits, the
    /// same for every method.
    case dense
}

/// A deterministic part of a sweep's prompts: those whose position `p` in the sweep has `p % count == index`.
public struct EvalShard: Codable, Sendable, Equatable, CustomStringConvertible {
    public var index: Int
    public var count: Int

    /// Parses `I/N` with 0 ≤ I < N.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]), n >= 1, (0..<n).contains(i) else { return nil }
        index = i
        count = n
    }

    /// Whether the prompt at position `prompt` of a sweep belongs to this shard.
    public func contains(prompt: Int) -> Bool { prompt % count == index }
    /// `I/N`, as `--shard` takes it.
    public var description: String { "\(index)/\(count)" }
}

/// What a sweep runs; written to `DIR/config.json` so results carry their configuration.
public struct EvalSettings: Codable, Sendable, Equatable {
    /// Changes whenever a change to the engine or the harness can change a prediction; part of every
    /// prediction's `configuration`, so a resumed sweep recomputes what an older engine made.
    public static let engineVersion = "2026-12-04.1"

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
    /// The row type of every method's cache (and of the recorded prefill's).
    public var kvType: KVCacheType
    public var model: String
    /// Single-turn tasks (passkey, RULER, fidelity); multi-turn always answers from the turn's prefill (§2.2).
    public var firstToken: FirstTokenSource
    /// Questions per multi-turn session.
    public var turns: Int
    /// The part of the prompts this run computes, nil for all of them.
    public var shard: EvalShard?

    public init(task: String, methods: [String], budgets: [Int], lengths: [Int], depths: [Double], samples: Int, seed: UInt64,
                maxTokens: Int, planNewTokens: Int, continuation: Int, haystack: String, kvOptions: [String: String], model: String,
                firstToken: FirstTokenSource = .compressed, turns: Int = 4, shard: EvalShard? = nil, kvType: KVCacheType = .f16) {
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
        self.kvType = kvType
        self.model = model
        self.firstToken = firstToken
        self.turns = turns
        self.shard = shard
    }

    enum CodingKeys: String, CodingKey {
        case task, methods, budgets, lengths, depths, samples, seed, maxTokens, planNewTokens, continuation, haystack, kvOptions, model
        case firstToken, turns, shard, kvType
    }

    /// Reads configurations written before `firstToken`, `turns`, `shard` and `kvType` existed as what those runs
    /// did (first token from the dense prefill, 4 turns, every prompt, f16 rows).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(task: try c.decode(String.self, forKey: .task), methods: try c.decode([String].self, forKey: .methods),
                  budgets: try c.decode([Int].self, forKey: .budgets), lengths: try c.decode([Int].self, forKey: .lengths),
                  depths: try c.decode([Double].self, forKey: .depths), samples: try c.decode(Int.self, forKey: .samples),
                  seed: try c.decode(UInt64.self, forKey: .seed), maxTokens: try c.decode(Int.self, forKey: .maxTokens),
                  planNewTokens: try c.decode(Int.self, forKey: .planNewTokens), continuation: try c.decode(Int.self, forKey: .continuation),
                  haystack: try c.decode(String.self, forKey: .haystack), kvOptions: try c.decode([String: String].self, forKey: .kvOptions),
                  model: try c.decode(String.self, forKey: .model),
                  firstToken: try c.decodeIfPresent(FirstTokenSource.self, forKey: .firstToken) ?? .dense,
                  turns: try c.decodeIfPresent(Int.self, forKey: .turns) ?? 4,
                  shard: try c.decodeIfPresent(EvalShard.self, forKey: .shard),
                  kvType: try c.decodeIfPresent(KVCacheType.self, forKey: .kvType) ?? .f16)
    }

    /// Each method once per budget; methods without a budget once.
    public func runs() throws -> [(method: String, budget: Int?)] {
        var runs: [(String, Int?)] = []
        for name in methods {
            let method = try KVMethods.named(try KVMethods.variant(name).name)
            _ = try KVMethods.options(kvOptions, for: name)
            if method.needsBudget {
                guard !budgets.isEmpty else { throw KVMethodError("method \(name) needs at least one budget") }
                runs += budgets.map { (name, $0) }
            } else {
                runs.append((name, nil))
            }
        }
        return runs
    }

    /// Everything a prediction of `method` depends on besides its cell and plan: the model, seed, haystack,
    /// the task's generation settings, the method's options, the KV row type (named unless f16, so earlier f16
    /// predictions stay valid) and the engine version.
    public func configuration(for method: String) throws -> String {
        var parts = ["model=\(model)", "seed=\(seed)", "haystack=\(haystack)", "plan-new-tokens=\(planNewTokens)"]
        switch task {
        case "passkey": parts += ["max-tokens=\(maxTokens)", "first-token=\(firstToken.rawValue)"]
        case "ruler": parts += ["first-token=\(firstToken.rawValue)"]
        case "fidelity": parts += ["continuation=\(continuation)", "first-token=\(firstToken.rawValue)"]
        default: parts += ["turns=\(turns)"]
        }
        parts += try KVMethods.options(kvOptions, for: method).sorted { $0.key < $1.key }.map { "kv-option \($0.key)=\($0.value)" }
        if kvType != .f16 { parts.append("kv-type=\(kvType)") }
        return (parts + ["engine=\(Self.engineVersion)"]).joined(separator: "; ")
    }

    /// The shortest prompt length a task accepts: its instruction, needles and question alone take most of this
    /// (passkey 72 tokens with SmolLM2's tokenizer; RULER's longest fixed part is cwe's minimum word list), so
    /// shorter lengths are rejected rather than silently exceeded (`RulerModelTests` checks each task fits).
    public var minimumLength: Int {
        switch task {
        case "passkey": return 80
        case "ruler": return 512
        case "multiturn": return 384 + 40 * max(0, turns - 1)
        default: return 64
        }
    }

    /// Tokens kept free after a prompt for what is generated.
    var room: Int { max(128, maxTokens, continuation) }

    /// Whether the task cuts a prompt at the model's context to leave `room` (passkey and RULER, as RULER does
    /// at its largest lengths: a "32K" prompt on a 32K model is 32K minus the answer).
    var cutsToContext: Bool { task == "passkey" || task == "ruler" }

    /// The prompt's token count for a sweep length: the length itself, or for tasks that cut at the context a
    /// length up to the context that leaves no room, `contextLength − room` (unless that is below the task's
    /// minimum). The length stays the cell's label; each prediction records its prompt's token count.
    public func promptTokens(length: Int, contextLength: Int) -> Int {
        let cut = contextLength - room
        guard cutsToContext, length <= contextLength, length > cut, cut >= minimumLength else { return length }
        return cut
    }

    /// Throws unless every setting is usable with a model of `contextLength` tokens (nil: not known yet).
    public func validate(contextLength: Int?) throws {
        // Far above any context, and small enough that sums of these cannot overflow.
        let limit = 1 << 28
        let sizes = [("length", lengths), ("budget", budgets), ("max tokens", [maxTokens]), ("continuation", [continuation]),
                     ("plan-new-tokens", [planNewTokens]), ("samples", [samples])]
        for (name, values) in sizes {
            for value in values where value > limit { throw InferenceError("\(name) \(value) is above the limit of \(limit)") }
        }
        for budget in budgets where budget < 16 { throw InferenceError("budget \(budget) is below the minimum of 16 tokens") }
        for depth in depths where !(0...1).contains(depth) { throw InferenceError("depth \(depth) is outside [0, 1]") }
        guard samples >= 1 else { throw InferenceError("samples must be ≥ 1") }
        for length in lengths where length < minimumLength {
            throw InferenceError("length \(length) is below the minimum of \(minimumLength) tokens for \(task)"
                                 + (task == "multiturn" ? " with \(turns) turns" : ""))
        }
        if let contextLength {
            for length in lengths where promptTokens(length: length, contextLength: contextLength) + room > contextLength {
                throw InferenceError("length \(length) must leave room for \(room) generated tokens in the context of \(contextLength)"
                                     + (cutsToContext ? "" : " (passkey and ruler accept lengths up to the context)"))
            }
            guard planNewTokens <= contextLength else {
                throw InferenceError("plan-new-tokens \(planNewTokens) is larger than the context of \(contextLength)")
            }
        }
        _ = try runs()
        for method in methods { _ = try configuration(for: method) }
    }

    /// `validate(contextLength:)` with `model`'s context, and every method × budget planned for every prompt
    /// length, so that an option value a method refuses (`votes=bogus`) stops the sweep before it starts.
    public func validate(for model: LanguageModel) throws {
        try validate(contextLength: model.config.contextLength)
        for run in try runs() {
            for length in Set(lengths.map { promptTokens(length: $0, contextLength: model.config.contextLength) }).sorted() {
                _ = try makePolicy(run, model: model, promptLength: length)
            }
        }
    }

    /// The policy of `run` for a prompt of `promptLength` tokens, with the options the method has (the fidelity
    /// reference `full` runs plain beside a tuned `rocket`).
    func makePolicy(_ run: (method: String, budget: Int?), model: LanguageModel, promptLength: Int) throws -> KVPolicy {
        try KVMethods.make(try KVMethods.variant(run.method).name, context: KVMethodContext(
            model: model, budget: run.budget, promptLength: promptLength, maxNewTokens: planNewTokens,
            options: try KVMethods.options(kvOptions, for: run.method), kvType: kvType))
    }
}

/// One prompt of a sweep as `--prompts-out` writes it: what another engine needs to answer the same tokens.
public struct EvalPromptRecord: Codable, Sendable, Equatable {
    public var task: String
    public var length: Int
    public var depth: Double?
    public var sample: Int
    /// Position of the prompt in its sweep (as in `EvalPrediction.prompt`).
    public var prompt: Int
    /// The prompt's token ids as the sweep feeds them (with BOS where the model's tokenizer adds one).
    public var tokens: [Int]
    /// What the scorer looks for in the output: the pass key, or every answer of a RULER task (each counts for
    /// an equal share, matched case-insensitively as a substring); empty for fidelity.
    public var answers: [String]
    /// Tokens generated greedily per answer (at most; fewer at end of generation), or fidelity's continuation length.
    public var maxTokens: Int
    /// Fidelity: the teacher-forced continuation's token ids.
    public var continuation: [Int]?

    enum CodingKeys: String, CodingKey {
        case task, length, depth, sample, prompt, tokens, answers, continuation
        case maxTokens = "max_tokens"
    }

    /// One JSON line (sorted keys, snake case as in `predictions.jsonl`).
    public var jsonLine: Data {
        get throws { try jsonLineData(self) }
    }
}

/// Runs the evaluation tasks: one dense prefill per prompt, replayed into every method and budget.
public final class Evaluator {
    /// The model and the pool every prefill, replay and decode of the sweep runs on.
    public let engine: Engine
    public var model: LanguageModel { engine.model }
    public let tokenizer: Tokenizer
    public let settings: EvalSettings
    /// Where predictions go; nil for an evaluator that only exports prompts.
    public let store: EvalStore?
    /// Called after each prompt × method × budget with (done, total) and a short label.
    public var onProgress: (Int, Int, String) -> Void = { _, _, _ in }
    /// The index of `settings` among the folder's sweeps of its task (`config.json`), stored with each prediction.
    public var sweepIndex = 0
    /// Predictions found in the store (same cell, configuration and plan) and not computed again.
    public private(set) var reused = 0
    /// Predictions computed and appended by this evaluator.
    public private(set) var computed = 0
    /// When set, the passkey, RULER and fidelity sweeps hand each of their prompts (in sweep order, this shard's)
    /// to it and run no model, so another engine can answer the same token ids (`eval run --prompts-out`).
    public private(set) var promptsOnly: ((EvalPromptRecord) throws -> Void)?

    public convenience init(engine: Engine, tokenizer: Tokenizer, settings: EvalSettings, store: EvalStore) throws {
        try self.init(engine: engine, tokenizer: tokenizer, settings: settings, store: store, promptsOnly: nil)
    }

    /// An evaluator whose passkey, RULER and fidelity sweeps hand each prompt to `onPrompt` and run no model: no
    /// store, nothing predicted (`eval run --prompts-out`).
    public convenience init(engine: Engine, tokenizer: Tokenizer, settings: EvalSettings,
                            exportingPromptsTo onPrompt: @escaping (EvalPromptRecord) throws -> Void) throws {
        try self.init(engine: engine, tokenizer: tokenizer, settings: settings, store: nil, promptsOnly: onPrompt)
    }

    /// Exactly one of `store` and `promptsOnly` is set.
    private init(engine: Engine, tokenizer: Tokenizer, settings: EvalSettings, store: EvalStore?,
                 promptsOnly: ((EvalPromptRecord) throws -> Void)?) throws {
        try settings.validate(for: engine.model)
        self.engine = engine
        self.tokenizer = tokenizer
        self.settings = settings
        self.store = store
        self.promptsOnly = promptsOnly
    }

    /// Needle in a haystack: lengths × depths × samples, scored by the key as a whole number in the output
    /// (with substring and partial match beside it).
    public func runPasskey(haystack: Haystack) throws {
        var cells: [Cell] = []
        for length in settings.lengths {
            for (depthIndex, depth) in settings.depths.enumerated() {
                for sample in 0..<settings.samples {
                    cells.append(Cell(task: "passkey", length: length, depth: depth, sample: sample, prompt: cells.count, variant: depthIndex))
                }
            }
        }
        let contextLength = model.config.contextLength
        try runGeneration(cells) { [settings, tokenizer] cell in
            var rng = cell.generator(seed: settings.seed)
            let key = Passkey.randomKey(using: &rng)
            let prompt = Passkey.prompt(haystack: haystack, tokens: settings.promptTokens(length: cell.length, contextLength: contextLength),
                                        depth: cell.depth!, key: key, tokenizer: tokenizer)
            return GenerationPrompt(tokens: prompt.tokens, answers: [key], maxTokens: settings.maxTokens) { output, prediction in
                prediction.score = Passkey.exactMatch(response: output, key: key)
                prediction.substring = Passkey.substringMatch(response: output, key: key)
                prediction.partial = Passkey.partialMatch(response: output, key: key)
            }
        }
    }

    /// RULER-style tasks (`Ruler.tasks`, or the given subset) at every length, `samples` prompts each;
    /// predictions are stored under the task name `ruler/<task>`.
    public func runRuler(haystack: Haystack, tasks: [String] = Ruler.tasks) throws {
        var cells: [Cell] = []
        for length in settings.lengths {
            for (taskIndex, task) in tasks.enumerated() {
                guard Ruler.tasks.contains(task) else { throw InferenceError("unknown RULER task '\(task)'; available: \(Ruler.tasks.joined(separator: ", "))") }
                for sample in 0..<settings.samples {
                    cells.append(Cell(task: "ruler/\(task)", length: length, depth: nil, sample: sample, prompt: cells.count, variant: taskIndex))
                }
            }
        }
        let contextLength = model.config.contextLength
        try runGeneration(cells) { [settings, tokenizer] cell in
            var rng = cell.generator(seed: settings.seed)
            let task = String(cell.task.dropFirst("ruler/".count))
            let length = settings.promptTokens(length: cell.length, contextLength: contextLength)
            let item = try Ruler.sample(task: task, haystack: haystack, tokens: length, tokenizer: tokenizer, using: &rng)
            let tokens = tokenizer.encode(item.prompt, addSpecial: true, parseSpecial: false)
            guard tokens.count <= length else {
                throw InferenceError("RULER task \(task) needs more than \(length) tokens (its prompt without filler has \(tokens.count))")
            }
            return GenerationPrompt(tokens: tokens, answers: item.answers, maxTokens: item.maxTokens) { output, prediction in
                prediction.score = Ruler.score(output: output, answers: item.answers)
            }
        }
    }

    /// SCBench-style shared-context sessions: essay text with `settings.turns` key-value needles, then as many
    /// questions, each asking for a different key in a new turn of the same sequence (the cache carries over;
    /// `rocket-mt` re-selects from the full history each turn, `rocket` re-compresses what it kept). Each turn's
    /// first answer token comes from that turn's prefill, as in [A]'s SCBench runs (§2.2). Score: fraction of
    /// turns whose answer contains the value.
    public func runMultiturn(haystack: Haystack) throws {
        guard promptsOnly == nil else { throw InferenceError("multiturn prompts cannot be exported: each later turn depends on the answers before it") }
        try sweep(samplesPerLength(task: "multiturn"), runs: try settings.runs(), holdBack: false) { cell in
            var rng = Xoshiro256StarStar(seed: settings.seed &+ UInt64(cell.length) &* 1_000_003 &+ UInt64(cell.sample) &+ 77)
            let session = MultiturnSession.make(haystack: haystack, tokens: cell.length, turns: settings.turns, tokenizer: tokenizer, using: &rng)
            guard session.firstPrompt.count <= cell.length else {
                throw InferenceError("multiturn needs more than \(cell.length) tokens for \(settings.turns) turns")
            }
            return (session.firstPrompt, session)
        } body: { cell, session, snapshot, pending, record in
            for run in pending {
                let (policy, generatorSession, firstLogits) = try start(snapshot, run: run.run, heldBack: nil)
                let generator = Generator(session: generatorSession, tokenizer: tokenizer)
                // An answer ends at its line; it stays in the history the next turn sees.
                var options = GenerationOptions()
                options.maxTokens = 12
                options.stopStrings = ["\n"]
                var result = try generator.generate(after: firstLogits, options: options)
                var outputs = [result.text]
                for question in session.laterQuestions {
                    // The last sampled token of a turn (cut by length or a stop string) has not been fed yet.
                    let carried = result.stopReason == .endOfGeneration ? [] : Array(result.tokens.suffix(1))
                    result = try generator.generate(prompt: carried + question, options: options)
                    outputs.append(result.text)
                }
                let hits = zip(outputs, session.values).filter { $0.0.contains($0.1) }.count
                try record(EvalPrediction(task: cell.task, method: run.run.method, budget: run.run.budget, length: cell.length, depth: nil,
                                          sample: cell.sample, output: outputs.joined(separator: " | "),
                                          expected: session.values.joined(separator: " | "),
                                          score: Double(hits) / Double(outputs.count),
                                          promptTokens: session.firstPrompt.count, statistics: policy.statistics), run)
            }
        }
    }

    /// One prompt position of a sweep: task, length, depth (passkey), sample, its position in the sweep and
    /// the index of its depth or RULER task (for the seed).
    private struct Cell {
        let task: String, length: Int, depth: Double?, sample: Int, prompt: Int, variant: Int
        /// The generator of this cell's random content (keys, needles, depths), from the sweep's seed.
        func generator(seed: UInt64) -> Xoshiro256StarStar {
            Xoshiro256StarStar(seed: seed &+ UInt64(length) &* 1_000_003 &+ UInt64(variant) &* 10_007 &+ UInt64(sample))
        }
        var label: String { "\(task) \(length) tokens" + (depth.map { ", depth \($0)" } ?? "") + ", sample \(sample)" }
    }

    /// `settings.samples` cells of `task` per length, numbered in that order.
    private func samplesPerLength(task: String) -> [Cell] {
        settings.lengths.flatMap { length in (0..<settings.samples).map { (length, $0) } }.enumerated().map { index, item in
            Cell(task: task, length: item.0, depth: nil, sample: item.1, prompt: index, variant: 0)
        }
    }

    /// A run of a cell that is not in the store yet, with what identifies its prediction.
    private struct PendingRun {
        let run: (method: String, budget: Int?)
        let configuration: String
        let plan: String?
    }

    /// For every cell of this shard: builds its prompt (`prepare`: the tokens and what the body needs), works
    /// out each run's prediction id (the method's plan for that prompt included), and — when some are not in
    /// the store — prefills the prompt once (without its last token when `holdBack`) and hands the snapshot and
    /// the pending runs to `body`, which calls `record` with each prediction. Counts reused and computed cells.
    private func sweep<Prompt>(_ cells: [Cell], runs: [(method: String, budget: Int?)], holdBack: Bool,
                               prepare: (Cell) throws -> ([Int], Prompt),
                               body: (Cell, Prompt, PrefillSnapshot, [PendingRun], (EvalPrediction, PendingRun) throws -> Void) throws -> Void) throws {
        let mine = cells.filter { settings.shard?.contains(prompt: $0.prompt) ?? true }
        let configurations = try Dictionary(uniqueKeysWithValues: Set(runs.map(\.method)).map { ($0, try settings.configuration(for: $0)) })
        let total = mine.count * runs.count
        var done = 0
        for cell in mine {
            let (tokens, prompt) = try prepare(cell)
            guard let store else { continue }   // exporting prompts: `prepare` handed this one over
            let prefilled = holdBack ? Array(tokens.dropLast()) : tokens
            var pending: [PendingRun] = []
            for run in runs {
                let candidate = PendingRun(run: run, configuration: configurations[run.method]!,
                                           plan: try settings.makePolicy(run, model: model, promptLength: prefilled.count).planDescription)
                var probe = EvalPrediction(task: cell.task, method: run.method, budget: run.budget, length: cell.length, depth: cell.depth,
                                           sample: cell.sample, output: "", expected: "", score: 0, promptTokens: 0, statistics: KVStatistics())
                probe.configuration = candidate.configuration
                probe.plan = candidate.plan
                if store.contains(probe.id) { reused += 1 } else { pending.append(candidate) }
            }
            done += runs.count - pending.count
            guard !pending.isEmpty else { continue }
            // Long prompts take minutes: report the prefill by tenths.
            let report = onProgress, reached = done
            let snapshot = try engine.prefillSnapshot(prefilled, kvType: settings.kvType) { prefilledTokens, promptTokens in
                report(reached, total, "\(cell.label): prefill \(prefilledTokens * 10 / promptTokens * 10)%")
            }
            try body(cell, prompt, snapshot, pending) { prediction, run in
                var prediction = prediction
                prediction.prompt = cell.prompt
                prediction.sweep = sweepIndex
                prediction.configuration = run.configuration
                prediction.plan = run.plan
                try store.append(prediction)
                computed += 1
                done += 1
                onProgress(done, total, cell.label)
            }
        }
    }

    /// One prompt of a generation sweep: its tokens, the strings the scorer looks for, tokens to generate, and
    /// the scorer, which sets the prediction's scores from the output.
    private struct GenerationPrompt {
        let tokens: [Int]
        let answers: [String]
        let maxTokens: Int
        let score: (String, inout EvalPrediction) -> Void
        var expected: String { answers.joined(separator: ", ") }
    }

    private func runGeneration(_ cells: [Cell], prompt make: (Cell) throws -> GenerationPrompt) throws {
        let holdBack = settings.firstToken == .compressed
        try sweep(cells, runs: try settings.runs(), holdBack: holdBack) { cell in
            let prompt = try make(cell)
            try promptsOnly?(EvalPromptRecord(task: cell.task, length: cell.length, depth: cell.depth, sample: cell.sample, prompt: cell.prompt,
                                              tokens: prompt.tokens, answers: prompt.answers, maxTokens: prompt.maxTokens))
            return (prompt.tokens, prompt)
        } body: { cell, prompt, snapshot, pending, record in
            for run in pending {
                let (policy, session, firstLogits) = try start(snapshot, run: run.run, heldBack: holdBack ? prompt.tokens.last : nil)
                var options = GenerationOptions()
                options.maxTokens = prompt.maxTokens
                let text = try Generator(session: session, tokenizer: tokenizer).generate(after: firstLogits, options: options).text
                var prediction = EvalPrediction(task: cell.task, method: run.run.method, budget: run.run.budget, length: cell.length,
                                                depth: cell.depth, sample: cell.sample, output: text, expected: prompt.expected, score: 0,
                                                promptTokens: prompt.tokens.count, statistics: policy.statistics)
                prompt.score(text, &prediction)
                try record(prediction, run)
            }
        }
    }

    /// Teacher-forced continuation of real text: per method and budget, top-1 agreement with `full` and
    /// KL(full ‖ method) of the next-token distributions, plus the method's perplexity on the true tokens.
    /// With the first token from the compressed cache, the prompt's last token is the first decode step of
    /// every method, `full` included, so the first compared distribution already comes from each method's cache.
    public func runFidelity(text haystack: Haystack) throws {
        var runs = try settings.runs()
        runs.removeAll { $0.method == "full" }
        runs.insert(("full", nil), at: 0)  // the reference, always computed first
        let holdBack = settings.firstToken == .compressed
        try sweep(samplesPerLength(task: "fidelity"), runs: runs, holdBack: holdBack) { cell in
            // Sample s starts s·3000 words into the corpus, so samples read different essays.
            let length = cell.length, wordCount = length + settings.continuation
            let words = (0..<wordCount).map { haystack.words[(cell.sample * 3000 + $0) % haystack.words.count] }
            let all = Array(tokenizer.encode(words.joined(separator: " "), addSpecial: true, parseSpecial: false).prefix(wordCount))
            let prompt = Array(all[..<length]), target = Array(all[length...])
            try promptsOnly?(EvalPromptRecord(task: cell.task, length: length, depth: nil, sample: cell.sample, prompt: cell.prompt,
                                              tokens: prompt, answers: [], maxTokens: target.count, continuation: target))
            return (prompt, (prompt, target))
        } body: { cell, texts, snapshot, pending, record in
            let (prompt, target) = texts
            let lastToken = holdBack ? prompt.last : nil
            let reference = try teacherForced(snapshot: snapshot, run: ("full", nil), heldBack: lastToken, target: target)
            for run in pending {
                let result = run.run.method == "full" ? reference : try teacherForced(snapshot: snapshot, run: run.run, heldBack: lastToken, target: target)
                var agree = 0.0, kl = 0.0, nll = 0.0
                for step in 0..<target.count {
                    let comparison = NextTokenComparison(reference: reference.logits[step], candidate: result.logits[step], target: target[step])
                    agree += comparison.sameTop1 ? 1 : 0
                    kl += comparison.kl
                    nll += comparison.negativeLogLikelihood
                }
                let n = Double(target.count)
                var prediction = EvalPrediction(task: cell.task, method: run.run.method, budget: run.run.budget, length: cell.length, depth: nil,
                                                sample: cell.sample, output: tokenizer.decode(result.logits.map { $0.withUnsafeBufferPointer(Sampler.argmax) }),
                                                expected: tokenizer.decode(target), score: agree / n,
                                                promptTokens: prompt.count, statistics: result.statistics)
                prediction.kl = kl / n
                prediction.nll = nll / n
                try record(prediction, run)
            }
        }
    }

    /// A fresh policy of `run` filled from the snapshot, its session, and the logits the first answer token is
    /// drawn from: the prefill's, or — with a held-back last prompt token — those of feeding that token as the
    /// first decode step through the method's cache (§2.2).
    private func start(_ snapshot: PrefillSnapshot, run: (method: String, budget: Int?),
                       heldBack: Int?) throws -> (KVPolicy, InferenceSession, [Float]) {
        let policy = try settings.makePolicy(run, model: model, promptLength: snapshot.tokens.count)
        snapshot.replay(into: policy)
        let session = snapshot.session(model: model, policy: policy)
        guard let heldBack else { return (policy, session, snapshot.lastLogits) }
        return (policy, session, Array(try session.decode(heldBack)))
    }

    /// The next-token logits of one method at every position of `target`, feeding the true tokens.
    private func teacherForced(snapshot: PrefillSnapshot, run: (method: String, budget: Int?), heldBack: Int?,
                               target: [Int]) throws -> (logits: [[Float]], statistics: KVStatistics) {
        let (policy, session, first) = try start(snapshot, run: run, heldBack: heldBack)
        var logits = [first]
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
