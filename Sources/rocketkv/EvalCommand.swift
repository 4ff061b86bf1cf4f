import ArgumentParser
import Foundation
import RocketKV

/// `rocketkv eval`: a sweep (the default subcommand, `rocketkv eval passkey ...`) or `rocketkv eval merge`.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Accuracy sweeps of KV methods × budgets with predictions, metrics and an HTML report; merging of sharded sweeps.",
        subcommands: [EvalRunCommand.self, EvalMergeCommand.self, EvalSummarizeCommand.self],
        defaultSubcommand: EvalRunCommand.self)
}

struct EvalRunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Accuracy sweeps of KV methods × budgets (passkey, ruler, multiturn, fidelity) with predictions, metrics and an HTML report.",
        discussion: """
        Each prompt is prefilled once with the full cache and replayed into every method and budget.
        Results go to --out: config.json, predictions.jsonl (re-running skips every prediction made with the same
        settings, options, plan and engine version), metrics.json, report.html.
        """)

    @Argument(help: "Task: passkey (needle in a haystack), ruler (synthetic RULER tasks), multiturn (shared-context retrieval, one key per turn) or fidelity (teacher-forced agreement with full).")
    var task: String

    @Option(name: .long, help: "Comma-separated KV methods; `method+key=value+...` is a variant with options of its own (e.g. rocket,rocket+votes=shared), sharing each prompt's prefill with the others.")
    var methods = "full,rocket,topk,snapkv,quest,sparq,streaming,h2o,hsa"

    @Option(name: .long, help: "Comma-separated token budgets.")
    var budgets = "64,128,256,512"

    @Option(name: .long, help: "Comma-separated RULER tasks (default: all).")
    var rulerTasks = Ruler.tasks.joined(separator: ",")

    @Option(name: .long, help: "Comma-separated prompt lengths in tokens (default: 2048,4096 for passkey, 4096 otherwise; at least 80 for passkey, 512 for ruler, 384 + 40 per extra turn for multiturn, 64 for fidelity; passkey and ruler take lengths up to the model's context, cut to leave room for the answer).")
    var lengths: String?

    @Option(name: .long, help: "Comma-separated needle depths in [0, 1] (passkey).")
    var depths = "0,0.25,0.5,0.75,1"

    @Option(name: .long, parsing: .unconditional, help: "Prompts per cell (passkey: random keys per length × depth; fidelity: text samples per length).")
    var samples = 1

    @Option(name: .long, parsing: .unconditional, help: "Seed for the keys.")
    var seed: UInt64 = 1

    @Option(name: .long, help: "Output folder.")
    var out = "rocketkv-eval"

    @Option(name: .long, help: "Folder of .txt files to use as haystack (default: the Paul Graham essays, fetched on first use).")
    var haystack: String?

    @Flag(name: .long, help: "Use the synthetic filler (\"The grass is green. ...\") as haystack.")
    var synthetic = false

    @Option(name: .long, parsing: .unconditional, help: "Tokens generated per passkey answer.")
    var maxTokens = 16

    @Option(name: .long, parsing: .unconditional, help: "N_new the budget split plans for (the paper's 128).")
    var planNewTokens = 128

    @Option(name: .long, parsing: .unconditional, help: "Questions per multiturn session (each in its own turn).")
    var turns = 4

    @Option(name: .long, parsing: .unconditional, help: "Teacher-forced tokens per fidelity prompt.")
    var continuation = 64

    @Option(name: .long, help: "Where the first answer token of passkey, ruler and fidelity comes from: compressed (the last prompt token is held back and fed as the first decode step, through the method's cache; the paper's protocol) or dense (from the full-cache prefill, the same for every method).")
    var firstToken = FirstTokenSource.compressed.rawValue

    @Option(name: .long, help: "Run only shard I of N (0 ≤ I < N): the prompts whose position in the sweep is I modulo N. Merge the shard folders with `rocketkv eval merge`.")
    var shard: String?

    @Option(name: .customLong("kv-option"), parsing: .singleValue, help: "Method option key=value (repeatable), given to each listed method that has it.")
    var kvOptions: [String] = []

    @Option(name: .customLong("kv-type"), help: "How every method's cache (and the recorded prefill's) stores keys and values: f16, q8_0, q4_0, or KEY/VALUE types such as q8_0/q4_0.")
    var kvType = "f16"

    @Option(name: .long, help: "Write the sweep's prompts (token ids, answers, tokens to generate; fidelity: the continuation) as JSON lines to this file and run no model, so another engine can answer the same tokens (passkey, ruler, fidelity). --out is not touched.")
    var promptsOut: String?

    @OptionGroup var modelOptions: ModelOptions

    func validate() throws {
        guard ["passkey", "ruler", "multiturn", "fidelity"].contains(task) else {
            throw ValidationError("unknown task '\(task)'; available: passkey, ruler, multiturn, fidelity")
        }
        if let promptsOut, promptsOut.isEmpty || promptsOut.hasSuffix("/") {
            throw ValidationError("--prompts-out needs a file name, not '\(promptsOut)'")
        }
        guard promptsOut == nil || task != "multiturn" else {
            throw ValidationError("--prompts-out: multiturn prompts cannot be exported (each later turn depends on the answers before it)")
        }
        for name in rulerTasks.split(separator: ",") where !Ruler.tasks.contains(String(name)) {
            throw ValidationError("unknown RULER task '\(name)'; available: \(Ruler.tasks.joined(separator: ", "))")
        }
        guard haystack == nil || !synthetic else { throw ValidationError("give either --haystack or --synthetic") }
        guard (1...16).contains(turns) else { throw ValidationError("--turns must be between 1 and 16") }
        guard maxTokens >= 1, continuation >= 1, planNewTokens >= 1 else {
            throw ValidationError("--max-tokens, --continuation and --plan-new-tokens must be ≥ 1")
        }
        if let haystack {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: haystack, isDirectory: &isFolder), isFolder.boolValue else {
                throw ValidationError("--haystack: '\(haystack)' is not a folder")
            }
        }
        try usage { _ = try settings(model: nil) }
    }

    /// The sweep's settings, checked (against the model's context and layers when known, every method planned
    /// for every length): every rejection happens here, before the haystack is fetched or anything is written to --out.
    func settings(model: LanguageModel?) throws -> EvalSettings {
        func list<T>(_ text: String, _ name: String, _ parse: (String) -> T?) throws -> [T] {
            let items = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            let values = items.compactMap(parse)
            guard !items.isEmpty, values.count == items.count else { throw ValidationError("--\(name) expects a comma-separated list, got '\(text)'") }
            return values
        }
        guard let firstToken = FirstTokenSource(rawValue: firstToken) else {
            throw ValidationError("--first-token must be compressed or dense, got '\(self.firstToken)'")
        }
        let shard = try self.shard.map { text in
            guard let shard = EvalShard(text) else { throw ValidationError("--shard expects I/N with 0 ≤ I < N, got '\(text)'") }
            return shard
        }
        let options = try parseKVOptions(kvOptions)
        let methodNames = try list(methods, "methods") { $0.isEmpty ? nil : $0 }
        try KVMethods.checkOptions(options, usedBy: methodNames)
        let settings = EvalSettings(
            task: task, methods: methodNames, budgets: try list(budgets, "budgets") { Int($0) },
            lengths: try list(lengths ?? (task == "passkey" ? "2048,4096" : "4096"), "lengths") { Int($0) },
            depths: try list(depths, "depths") { Double($0) }, samples: samples, seed: seed, maxTokens: maxTokens,
            planNewTokens: planNewTokens, continuation: continuation,
            haystack: synthetic ? "synthetic" : (haystack ?? "paul-graham-essays"), kvOptions: options, model: model?.config.name ?? "",
            firstToken: firstToken, turns: turns, shard: shard, kvType: try KVCacheType(parsing: kvType))
        do {
            if let model { try settings.validate(for: model) } else { try settings.validate(contextLength: nil) }
        } catch let error as InferenceError {
            throw ValidationError(error.description)
        } catch let error as KVMethodError {
            throw ValidationError(error.description)
        }
        return settings
    }

    func run() throws {
        let loaded = try modelOptions.load()
        let model = loaded.model!
        let settings = try settings(model: model)
        let folder = URL(fileURLWithPath: out)
        let (configurations, sweepIndex) = EvalFolder.adding(settings, to: try EvalFolder.configurations(in: folder))
        let text: Haystack
        if synthetic {
            text = Haystack.synthetic
        } else if let haystack {
            text = try Haystack(folder: URL(fileURLWithPath: haystack))
        } else {
            text = try Haystack.paulGraham(log: { printError($0) })
        }
        if let promptsOut {
            try exportPrompts(to: URL(fileURLWithPath: promptsOut), engine: loaded.engine!, tokenizer: loaded.tokenizer, settings: settings, haystack: text)
            return
        }
        let store = try EvalStore(folder: folder)
        try store.writeJSON(configurations, name: "config.json")

        let evaluator = try Evaluator(engine: loaded.engine!, tokenizer: loaded.tokenizer, settings: settings, store: store)
        evaluator.sweepIndex = sweepIndex
        let progress = EvalProgress()
        evaluator.onProgress = progress.update
        try runTask(evaluator, haystack: text)
        progress.finish()

        let metrics = try EvalFolder.writeSummaries(store, configurations: configurations)
        print(summaryTable(metrics.filter { $0.task == task || $0.task.hasPrefix(task + "/") }))
        printError("predictions: \(evaluator.computed) computed, \(evaluator.reused) reused from \(out)/predictions.jsonl")
        printError("wrote \(out)/predictions.jsonl, metrics.json, report.html")
    }
}

extension EvalRunCommand {
    func runTask(_ evaluator: Evaluator, haystack: Haystack) throws {
        switch task {
        case "passkey": try evaluator.runPasskey(haystack: haystack)
        case "ruler": try evaluator.runRuler(haystack: haystack, tasks: rulerTasks.split(separator: ",").map(String.init))
        case "multiturn": try evaluator.runMultiturn(haystack: haystack)
        default: try evaluator.runFidelity(text: haystack)
        }
    }

    /// The sweep's prompts as JSON lines in `file`, written whole (a temporary file renamed into place); nothing is
    /// predicted, and --out stays as it was.
    func exportPrompts(to file: URL, engine: Engine, tokenizer: Tokenizer, settings: EvalSettings, haystack: Haystack) throws {
        var lines = Data(), count = 0
        let evaluator = try Evaluator(engine: engine, tokenizer: tokenizer, settings: settings) { record in
            lines += try record.jsonLine
            count += 1
        }
        try runTask(evaluator, haystack: haystack)
        do {
            try lines.write(to: file, options: .atomic)
        } catch {
            throw CLIError(kind: .cannotCreate, description: "cannot write the prompts to \(file.path) (\(describe(error)))")
        }
        printError("wrote \(count) prompts to \(file.path)")
    }
}

/// `rocketkv eval merge`: shard folders into one.
struct EvalMergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Combines the folders of a sharded sweep (`--shard I/N`) into one predictions.jsonl, metrics.json and report.html.",
        discussion: "The shards must have run the same commands in the same order with the same settings (apart from --shard), and every shard 0…N−1 must be there; the result equals the unsharded run.")

    @Argument(help: "The shard folders.")
    var shards: [String]

    @Option(name: .long, help: "Output folder (must not hold predictions yet).")
    var out: String

    func validate() throws {
        guard !shards.isEmpty else { throw ValidationError("give the shard folders to merge") }
        for shard in shards where !FileManager.default.fileExists(atPath: URL(fileURLWithPath: shard).appendingPathComponent("config.json").path) {
            throw ValidationError("'\(shard)' has no config.json; is it an evaluation folder?")
        }
    }

    func run() throws {
        let metrics = try EvalFolder.merge(shards.map { URL(fileURLWithPath: $0) }, into: URL(fileURLWithPath: out))
        print(summaryTable(metrics))
        printError("wrote \(out)/predictions.jsonl, config.json, metrics.json, report.html")
    }
}

/// `rocketkv eval summarize`: metrics and report rewritten from a folder's predictions.
struct EvalSummarizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "summarize",
        abstract: "Rewrites DIR/metrics.json and DIR/report.html from DIR/predictions.jsonl and DIR/config.json (e.g. after an interrupted sweep, or to add the intervals to an older folder); runs no model.")

    @Argument(help: "The evaluation folder.")
    var folder: String

    func validate() throws {
        guard FileManager.default.fileExists(atPath: URL(fileURLWithPath: folder).appendingPathComponent("predictions.jsonl").path) else {
            throw ValidationError("'\(folder)' has no predictions.jsonl")
        }
    }

    func run() throws {
        let url = URL(fileURLWithPath: folder)
        let metrics = try EvalFolder.writeSummaries(try EvalStore(folder: url), configurations: try EvalFolder.configurations(in: url))
        print(summaryTable(metrics))
        printError("wrote \(folder)/config.json, metrics.json, report.html")
    }
}

/// One line per task × method × budget × length: accuracy with its 95 % interval and sample count, and the
/// task's second figure (passkey: substring match; fidelity: KL), the options when there are any.
func summaryTable(_ metrics: [EvalMetric]) -> String {
    func cell(_ text: String, _ width: Int) -> String { text.padding(toLength: max(width, text.count + 1), withPad: " ", startingAt: 0) }
    var lines = [cell("task", 22) + cell("method", 16) + cell("length", 8) + cell("accuracy % [95 % interval] n", 30) + "other"]
    for m in metrics {
        var other = ""
        if let substring = m.substring, let interval = m.substringInterval { other = String(format: "substring %.1f %@", substring, interval.text) }
        if let kl = m.kl { other = String(format: "KL %.4f", kl) }
        if let ideal = m.kvIdealReadBytesPerStep {
            other += String(format: "%@read %.2f MiB/step (ideal %.2f)", other.isEmpty ? "" : "; ", m.kvReadBytesPerStep / 1_048_576, ideal / 1_048_576)
        }
        if !m.options.isEmpty { other += (other.isEmpty ? "" : "; ") + m.options }
        lines.append(cell(m.task, 22) + cell(m.method + (m.budget.map { "@\($0)" } ?? ""), 16) + cell("\(m.length)", 8) + cell(m.accuracyText, 30) + other)
    }
    return lines.joined(separator: "\n")
}

/// Progress with ETA on stderr: a redrawn bar on a terminal, one line per new prompt otherwise.
final class EvalProgress {
    let start = Date()
    let terminal = isatty(STDERR_FILENO) != 0
    var lastLabel = ""
    var firstDone: Int?

    func update(_ done: Int, _ total: Int, _ label: String) {
        let elapsed = Date().timeIntervalSince(start)
        if firstDone == nil { firstDone = done }  // resumed runs do not count towards the rate
        let fresh = done - (firstDone ?? 0)
        let eta = fresh > 0 ? elapsed / Double(fresh) * Double(total - done) : 0
        let text = String(format: "%@ %d/%d  elapsed %@  eta %@", label, done, total, clock(elapsed), fresh > 0 ? clock(eta) : "?")
        if terminal {
            let width = 24, filled = total > 0 ? width * done / total : width
            let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
            FileHandle.standardError.write(Data("\r\u{1B}[K\(bar) \(text)".utf8))
        } else if label != lastLabel {
            printError(text)
        }
        lastLabel = label
    }

    func finish() {
        if terminal { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        printError("done in \(clock(Date().timeIntervalSince(start)))")
    }

    func clock(_ seconds: Double) -> String {
        let s = Int(seconds)
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}
