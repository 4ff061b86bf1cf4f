import ArgumentParser
import Foundation
import RocketKV

@main
struct RocketKVCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rocketkv",
        abstract: "Long-context LLM inference on the CPU with RocketKV KV-cache compression.",
        subcommands: [GenerateCommand.self, ChatCommand.self, BenchCommand.self, EvalCommand.self, MethodsCommand.self, ModelsCommand.self, TokenizeCommand.self,
                      InspectCommand.self, ServeCommand.self, BenchChildCommand.self],
        defaultSubcommand: nil)
}

/// Options shared by every command that loads a model.
struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "A catalog model name (`rocketkv models`; fetched and verified on first use) or a path to a GGUF file (default: smollm2-135m).")
    var model: String?

    @Option(name: .long, parsing: .unconditional, help: "Worker threads (default: all cores).")
    var threads: Int?

    @Flag(name: .long, help: "Print details (model, timings) on stderr.")
    var verbose = false

    func validate() throws {
        if let threads, threads < 1 || threads > 64 { throw ValidationError("--threads must be between 1 and 64") }
    }

    /// Opens the model file (fetching the default model if needed) and builds the engine objects.
    func load(needsModel: Bool = true) throws -> LoadedModel {
        let path = try resolveModel(model)
        let file = try GGUFFile(path: path)
        let tokenizer = try Tokenizer(gguf: file)
        let engine = needsModel ? try Engine(file: file, threads: threads ?? ProcessInfo.processInfo.activeProcessorCount) : nil
        if let engine { try tokenizer.checkFits(engine.model.config) }
        if verbose, let engine {
            let c = engine.model.config
            printError("model: \(c.name) (\(c.architecture), \(c.layers) layers, \(c.queryHeads)/\(c.kvHeads) heads, context \(c.contextLength)) from \(path)")
        }
        return LoadedModel(file: file, tokenizer: tokenizer, engine: engine)
    }
}

/// A `--model` value as a file path: a catalog name (fetched on first use), or an existing file; anything else
/// is a usage error (an unknown name) or a missing input file (a path).
func resolveModel(_ nameOrPath: String?) throws -> String {
    if let nameOrPath, ModelStore.catalogModel(named: nameOrPath) == nil {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: nameOrPath, isDirectory: &isDirectory) else {
            if nameOrPath.contains("/") || nameOrPath.hasSuffix(".gguf") { throw CLIError.noInput("model file '\(nameOrPath)' does not exist") }
            throw CLIError.usage("--model '\(nameOrPath)' is neither a catalog model (\(ModelStore.catalog.map(\.name).joined(separator: ", "))) nor a file")
        }
        if isDirectory.boolValue { throw CLIError.noInput("--model '\(nameOrPath)' is a folder, not a GGUF file") }
    }
    return try ModelStore.resolve(nameOrPath, log: { printError($0) })
}

struct LoadedModel {
    let file: GGUFFile
    let tokenizer: Tokenizer
    let engine: Engine?
    var model: LanguageModel? { engine?.model }
}

/// Sampling options shared by `generate` and `chat`.
struct SamplingOptions: ParsableArguments {
    @Option(name: .long, parsing: .unconditional, help: "Maximum tokens to generate (clamped to the room left in the context).")
    var maxTokens = 256

    @Option(name: .long, parsing: .unconditional, help: "Sampling temperature; 0 is greedy.")
    var temperature: Float = 0

    @Option(name: .long, parsing: .unconditional, help: "Top-k sampling (0 disables).")
    var topK = 40

    @Option(name: .long, parsing: .unconditional, help: "Top-p (nucleus) sampling.")
    var topP: Float = 0.95

    @Option(name: .long, parsing: .unconditional, help: "Min-p sampling.")
    var minP: Float = 0.05

    @Option(name: .long, parsing: .unconditional, help: "Repetition penalty (1 disables).")
    var repeatPenalty: Float = 1

    @Option(name: .long, parsing: .unconditional, help: "Random seed for sampling.")
    var seed: UInt64?

    @Option(name: .long, parsing: .singleValue, help: "Stop when the text contains this string (repeatable).")
    var stop: [String] = []

    func validate() throws {
        guard maxTokens >= 0 else { throw ValidationError("--max-tokens must be ≥ 0") }
        guard temperature.isFinite, temperature >= 0 else { throw ValidationError("--temperature must be a finite number ≥ 0") }
        guard topK >= 0 else { throw ValidationError("--top-k must be ≥ 0") }
        guard (0...1).contains(topP) else { throw ValidationError("--top-p must be in [0, 1]") }
        guard (0...1).contains(minP) else { throw ValidationError("--min-p must be in [0, 1]") }
        guard repeatPenalty.isFinite, repeatPenalty > 0 else { throw ValidationError("--repeat-penalty must be a finite number > 0") }
    }

    /// The generation options, with at most `room` tokens (the context left after the prompt); a larger
    /// `--max-tokens` is clamped with a note on stderr.
    func options(room: Int) -> GenerationOptions {
        var o = GenerationOptions()
        o.maxTokens = min(maxTokens, max(0, room))
        if maxTokens > o.maxTokens { printError("note: --max-tokens \(maxTokens) clamped to \(o.maxTokens), the room left in the context") }
        o.stopStrings = stop
        o.sampling = SamplingParameters(temperature: temperature, topK: topK, topP: topP, minP: minP,
                                        repetitionPenalty: repeatPenalty, seed: seed)
        return o
    }
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

/// Reads a UTF-8 text file, with a clear error for a missing file or invalid UTF-8.
func readTextFile(_ path: String) throws -> String {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue,
          let data = FileManager.default.contents(atPath: path) else {
        throw CLIError.noInput("cannot read file '\(path)'" + (isDirectory.boolValue ? ": it is a folder" : ""))
    }
    guard let text = String(data: data, encoding: .utf8) else { throw CLIError.badData("file '\(path)' is not valid UTF-8") }
    return text
}

/// Progress of long work (a prompt's prefill) on stderr: a redrawn bar with tokens/s and the time left on a
/// terminal; otherwise, for work of at least `quietBelow` tokens, one line per tenth (so logs show it too).
final class ProgressLine {
    let label: String
    let terminal = isatty(STDERR_FILENO) != 0
    let quietBelow: Int
    private let start = DispatchTime.now().uptimeNanoseconds
    private var lastTenth = 0

    init(label: String, quietBelow: Int = 4096) {
        self.label = label
        self.quietBelow = quietBelow
    }

    func update(_ done: Int, _ total: Int) {
        guard total > 0 else { return }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let rate = seconds > 0 ? Double(done) / seconds : 0
        let left = rate > 0 ? Double(total - done) / rate : 0
        let text = String(format: "%@ %d/%d tokens, %.0f tok/s, %.0f s left", label, done, total, rate, left)
        if terminal {
            let width = 30, filled = width * done / total
            let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
            FileHandle.standardError.write(Data("\r\u{1B}[K\(bar) \(text)".utf8))
            if done == total { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        } else if total >= quietBelow, 10 * done / total > lastTenth {
            lastTenth = 10 * done / total
            printError(text)
        }
    }
}

/// KV-cache method options shared by `generate`, `chat` (and `bench`).
/// `--kv-option key=value` items as a dictionary (a later item with the same key wins).
func parseKVOptions(_ items: [String]) throws -> [String: String] {
    var options: [String: String] = [:]
    for item in items {
        let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, !parts[0].isEmpty else { throw ValidationError("--kv-option expects key=value, got '\(item)'") }
        options[parts[0]] = parts[1]
    }
    return options
}

struct KVOptions: ParsableArguments {
    @Option(name: .long, help: "KV-cache method (see `rocketkv methods`).")
    var kv = "full"

    @Option(name: .long, parsing: .unconditional, help: "Token budget: K+V pairs read per KV group per decode step.")
    var budget: Int?

    @Option(name: .customLong("kv-option"), parsing: .singleValue, help: "Method option key=value (repeatable).")
    var kvOptions: [String] = []

    @Option(name: .customLong("kv-type"), help: "How the KV cache stores keys and values: f16, q8_0 or q4_0 (ggml blocks of 32; head dim a multiple of 32), or KEY/VALUE types such as q8_0/q4_0 (llama.cpp's -ctk/-ctv). q8_0 halves the KV for a small accuracy cost (SmolLM2, RULER at 4K: -2.3 points); q4_0 quarters it for a large one (-21 points), nearly all of it from the keys (EVALUATION.md).")
    var kvType = "f16"

    func validate() throws {
        try usage {
            _ = try parsedOptions()
            _ = try cacheType()
            let method = try KVMethods.named(kv)
            if method.needsBudget && budget == nil { throw ValidationError("--kv \(kv) needs --budget") }
            if let budget, budget < 16 { throw ValidationError("--budget must be at least 16 tokens") }
        }
    }

    func parsedOptions() throws -> [String: String] { try parseKVOptions(kvOptions) }

    /// `--kv-type` as the cache's key and value row types.
    func cacheType() throws -> KVCacheType { try KVCacheType(parsing: kvType) }

    /// Builds the policy for a sequence whose (first) prompt has `promptLength` tokens.
    func makePolicy(model: LanguageModel, promptLength: Int, maxNewTokens: Int, verbose: Bool) throws -> KVPolicy {
        if let budget, budget > model.config.contextLength {
            throw ValidationError("--budget \(budget) is larger than the model's context of \(model.config.contextLength) tokens")
        }
        let context = KVMethodContext(model: model, budget: budget, promptLength: promptLength, maxNewTokens: maxNewTokens,
                                      options: try parsedOptions(), kvType: try cacheType())
        let policy = try KVMethods.make(kv, context: context)
        if verbose {
            printError("kv: \(kv)" + (budget.map { ", budget \($0)" } ?? "") + ", \(kvType) rows" + (policy.planDescription.map { " — \($0)" } ?? ""))
        }
        return policy
    }
}
