import ArgumentParser
import Foundation
import RocketKV

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Accuracy sweeps of KV methods × budgets (passkey, fidelity) with predictions, metrics and an HTML report.",
        discussion: """
        Each prompt is prefilled once with the full cache and replayed into every method and budget.
        Results go to --out: config.json, predictions.jsonl (re-running skips what is there), metrics.json, report.html.
        """)

    @Argument(help: "Task: passkey (needle in a haystack), ruler (synthetic RULER tasks), multiturn (shared-context retrieval, one key per turn) or fidelity (teacher-forced agreement with full).")
    var task: String

    @Option(name: .long, help: "Comma-separated KV methods.")
    var methods = "full,rocket,topk,snapkv,quest,sparq,streaming,h2o,hsa"

    @Option(name: .long, help: "Comma-separated token budgets.")
    var budgets = "64,128,256,512"

    @Option(name: .long, help: "Comma-separated RULER tasks (default: all).")
    var rulerTasks = Ruler.tasks.joined(separator: ",")

    @Option(name: .long, help: "Comma-separated prompt lengths in tokens (default: 2048,4096 for passkey, 4096 otherwise).")
    var lengths: String?

    @Option(name: .long, help: "Comma-separated needle depths in [0, 1] (passkey).")
    var depths = "0,0.25,0.5,0.75,1"

    @Option(name: .long, help: "Prompts per cell (passkey: random keys per length × depth; fidelity: text samples per length).")
    var samples = 1

    @Option(name: .long, help: "Seed for the keys.")
    var seed: UInt64 = 1

    @Option(name: .long, help: "Output folder.")
    var out = "rocketkv-eval"

    @Option(name: .long, help: "Folder of .txt files to use as haystack (default: the Paul Graham essays, fetched on first use).")
    var haystack: String?

    @Flag(name: .long, help: "Use the synthetic filler (\"The grass is green. ...\") as haystack.")
    var synthetic = false

    @Option(name: .long, help: "Tokens generated per passkey answer.")
    var maxTokens = 16

    @Option(name: .long, help: "N_new the budget split plans for (the paper's 128).")
    var planNewTokens = 128

    @Option(name: .long, help: "Questions per multiturn session (each in its own turn).")
    var turns = 4

    @Option(name: .long, help: "Teacher-forced tokens per fidelity prompt.")
    var continuation = 64

    @Option(name: .customLong("kv-option"), parsing: .singleValue, help: "Method option key=value (repeatable), given to each listed method that has it.")
    var kvOptions: [String] = []

    @OptionGroup var modelOptions: ModelOptions

    func validate() throws {
        guard ["passkey", "ruler", "multiturn", "fidelity"].contains(task) else {
            throw ValidationError("unknown task '\(task)'; available: passkey, ruler, multiturn, fidelity")
        }
        for name in rulerTasks.split(separator: ",") where !Ruler.tasks.contains(String(name)) {
            throw ValidationError("unknown RULER task '\(name)'; available: \(Ruler.tasks.joined(separator: ", "))")
        }
        guard haystack == nil || !synthetic else { throw ValidationError("give either --haystack or --synthetic") }
        guard samples >= 1 else { throw ValidationError("--samples must be ≥ 1") }
        guard (1...16).contains(turns) else { throw ValidationError("--turns must be between 1 and 16") }
        guard maxTokens >= 1, continuation >= 1, planNewTokens >= 1 else {
            throw ValidationError("--max-tokens, --continuation and --plan-new-tokens must be ≥ 1")
        }
        _ = try settings(model: "")
    }

    func settings(model: String) throws -> EvalSettings {
        func list<T>(_ text: String, _ name: String, _ parse: (String) -> T?) throws -> [T] {
            let items = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            let values = items.compactMap(parse)
            guard !items.isEmpty, values.count == items.count else { throw ValidationError("--\(name) expects a comma-separated list, got '\(text)'") }
            return values
        }
        let options = try parseKVOptions(kvOptions)
        let methodNames = try list(methods, "methods") { $0.isEmpty ? nil : $0 }
        try KVMethods.checkOptions(options, usedBy: methodNames)
        let settings = EvalSettings(
            task: task, methods: methodNames, budgets: try list(budgets, "budgets") { Int($0) },
            lengths: try list(lengths ?? (task == "passkey" ? "2048,4096" : "4096"), "lengths") { Int($0) },
            depths: try list(depths, "depths") { Double($0) }, samples: samples, seed: seed, maxTokens: maxTokens,
            planNewTokens: planNewTokens, continuation: continuation,
            haystack: synthetic ? "synthetic" : (haystack ?? "paul-graham-essays"), kvOptions: options, model: model)
        for budget in settings.budgets where budget < 16 { throw ValidationError("--budgets: \(budget) is below the minimum of 16 tokens") }
        for depth in settings.depths where !(0...1).contains(depth) { throw ValidationError("--depths: \(depth) is outside [0, 1]") }
        _ = try settings.runs()
        return settings
    }

    func run() throws {
        let loaded = try modelOptions.load()
        let model = loaded.model!
        let settings = try settings(model: model.config.name)
        let text: Haystack
        if synthetic {
            text = Haystack.synthetic
        } else if let haystack {
            text = try Haystack(folder: URL(fileURLWithPath: haystack))
        } else {
            text = try Haystack.paulGraham(log: { printError($0) })
        }
        let store = try EvalStore(folder: URL(fileURLWithPath: out))
        // Every distinct sweep that wrote into this folder, per task.
        var configs = (try? JSONDecoder().decode([String: [EvalSettings]].self,
                                                 from: Data(contentsOf: store.folder.appendingPathComponent("config.json")))) ?? [:]
        if !(configs[task] ?? []).contains(settings) { configs[task, default: []].append(settings) }
        try store.writeJSON(configs, name: "config.json")

        let evaluator = try Evaluator(engine: loaded.engine!, tokenizer: loaded.tokenizer, settings: settings, store: store)
        let progress = EvalProgress()
        evaluator.onProgress = progress.update
        switch task {
        case "passkey": try evaluator.runPasskey(haystack: text)
        case "ruler": try evaluator.runRuler(haystack: text, tasks: rulerTasks.split(separator: ",").map(String.init))
        case "multiturn": try evaluator.runMultiturn(haystack: text, turns: turns)
        default: try evaluator.runFidelity(text: text)
        }
        progress.finish()

        let metrics = EvalMetric.summarize(store.predictions)
        try store.writeJSON(metrics, name: "metrics.json")
        let html = EvalReport.html(predictions: store.predictions, settings: configs)
        try Data(html.utf8).write(to: store.folder.appendingPathComponent("report.html"))
        print(task == "ruler" ? rulerTable(metrics.filter { $0.task.hasPrefix("ruler/") }) : summaryTable(metrics.filter { $0.task == task }))
        printError("wrote \(out)/predictions.jsonl, metrics.json, report.html")
    }

    /// Methods × budgets as rows, lengths as columns.
    func summaryTable(_ metrics: [EvalMetric]) -> String {
        let lengths = Array(Set(metrics.map(\.length))).sorted()
        var rows: [String] = []
        var cells: [String: EvalMetric] = [:]
        for m in metrics {
            let row = m.method + (m.budget.map { "@\($0)" } ?? "")
            if cells.keys.allSatisfy({ !$0.hasPrefix(row + "|") }) { rows.append(row) }
            cells["\(row)|\(m.length)"] = m
        }
        let label = task == "fidelity" ? "top-1 % / KL" : "accuracy %"
        var lines = [String(format: "%-16@", "\(task) \(label)" as NSString) + lengths.map { String(format: "%16d", $0) }.joined()]
        for row in rows {
            let values = lengths.map { length -> String in
                guard let m = cells["\(row)|\(length)"] else { return String(repeating: " ", count: 15) + "–" }
                let text = task == "fidelity" ? String(format: "%.1f / %.3f", m.accuracy, m.kl ?? 0) : String(format: "%.1f", m.accuracy)
                return String(repeating: " ", count: max(1, 16 - text.count)) + text
            }
            lines.append(row.padding(toLength: 16, withPad: " ", startingAt: 0) + values.joined())
        }
        return lines.joined(separator: "\n")
    }
}

extension EvalCommand {
    /// Methods × budgets as rows, RULER tasks and their average as columns (all lengths pooled).
    func rulerTable(_ metrics: [EvalMetric]) -> String {
        var tasks: [String] = []
        for m in metrics where !tasks.contains(m.task) { tasks.append(m.task) }
        var rows: [String] = []
        var cells: [String: [Double]] = [:]
        for m in metrics {
            let row = m.method + (m.budget.map { "@\($0)" } ?? "")
            if !rows.contains(row) { rows.append(row) }
            cells["\(row)|\(m.task)", default: []].append(m.accuracy)
        }
        let names = tasks.map { String($0.dropFirst("ruler/".count)) } + ["avg"]
        func column(_ text: String) -> String { String(repeating: " ", count: max(1, 16 - text.count)) + text }
        var lines = ["ruler %".padding(toLength: 16, withPad: " ", startingAt: 0) + names.map(column).joined()]
        for row in rows {
            let values = tasks.map { cells["\(row)|\($0)"].map { $0.reduce(0, +) / Double($0.count) } }
            let known = values.compactMap { $0 }
            let all = values + [known.isEmpty ? nil : known.reduce(0, +) / Double(known.count)]
            let texts: [String] = all.map { value in value.map { String(format: "%.1f", $0) } ?? "–" }
            lines.append(row.padding(toLength: 16, withPad: " ", startingAt: 0) + texts.map(column).joined())
        }
        return lines.joined(separator: "\n")
    }
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
