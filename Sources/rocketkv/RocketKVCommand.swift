import ArgumentParser
import Foundation
import RocketKV

@main
struct RocketKVCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rocketkv",
        abstract: "Long-context LLM inference on the CPU with RocketKV KV-cache compression.",
        subcommands: [GenerateCommand.self, ChatCommand.self, TokenizeCommand.self, InspectCommand.self, BenchCommand.self, BenchChildCommand.self],
        defaultSubcommand: nil)
}

/// Options shared by every command that loads a model.
struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "Path to a GGUF model (default: SmolLM2-135M-Instruct Q4_1, fetched on first use).")
    var model: String?

    @Option(name: .long, help: "Worker threads (default: all cores).")
    var threads: Int?

    @Flag(name: .long, help: "Print details (model, timings) on stderr.")
    var verbose = false

    func validate() throws {
        if let threads, threads < 1 || threads > 64 { throw ValidationError("--threads must be between 1 and 64") }
    }

    /// Opens the model file (fetching the default model if needed) and builds the engine objects.
    func load(needsModel: Bool = true) throws -> LoadedModel {
        ThreadPool.start(threads: threads ?? ProcessInfo.processInfo.activeProcessorCount)
        let path = try model ?? ModelStore.defaultModelPath(log: { printError($0) })
        let file = try GGUFFile(path: path)
        let tokenizer = try Tokenizer(gguf: file)
        let llama = needsModel ? try LlamaModel(file: file) : nil
        if verbose, let llama {
            let c = llama.config
            printError("model: \(c.name) (\(c.architecture), \(c.layers) layers, \(c.queryHeads)/\(c.kvHeads) heads, context \(c.contextLength)) from \(path)")
        }
        return LoadedModel(file: file, tokenizer: tokenizer, model: llama)
    }
}

struct LoadedModel {
    let file: GGUFFile
    let tokenizer: Tokenizer
    let model: LlamaModel?
}

/// Sampling options shared by `generate` and `chat`.
struct SamplingOptions: ParsableArguments {
    @Option(name: .long, help: "Maximum tokens to generate.")
    var maxTokens = 256

    @Option(name: .long, help: "Sampling temperature; 0 is greedy.")
    var temperature: Float = 0

    @Option(name: .long, help: "Top-k sampling (0 disables).")
    var topK = 40

    @Option(name: .long, help: "Top-p (nucleus) sampling.")
    var topP: Float = 0.95

    @Option(name: .long, help: "Min-p sampling.")
    var minP: Float = 0.05

    @Option(name: .long, help: "Repetition penalty (1 disables).")
    var repeatPenalty: Float = 1

    @Option(name: .long, help: "Random seed for sampling.")
    var seed: UInt64?

    @Option(name: .long, parsing: .singleValue, help: "Stop when the text contains this string (repeatable).")
    var stop: [String] = []

    func validate() throws {
        guard maxTokens >= 0 else { throw ValidationError("--max-tokens must be ≥ 0") }
        guard temperature >= 0 else { throw ValidationError("--temperature must be ≥ 0") }
        guard topK >= 0 else { throw ValidationError("--top-k must be ≥ 0") }
        guard (0...1).contains(topP), (0...1).contains(minP) else { throw ValidationError("--top-p and --min-p must be in [0, 1]") }
        guard repeatPenalty > 0 else { throw ValidationError("--repeat-penalty must be > 0") }
    }

    var options: GenerationOptions {
        var o = GenerationOptions()
        o.maxTokens = maxTokens
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
    guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read file '\(path)'") }
    guard let text = String(data: data, encoding: .utf8) else { throw ValidationError("file '\(path)' is not valid UTF-8") }
    return text
}

/// A one-line progress display on stderr (only when stderr is a terminal).
struct ProgressLine {
    let label: String
    let enabled = isatty(STDERR_FILENO) != 0
    func update(_ done: Int, _ total: Int) {
        guard enabled, total > 0 else { return }
        let width = 30, filled = width * done / total
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        FileHandle.standardError.write(Data("\r\(label) \(bar) \(done)/\(total)".utf8))
        if done == total { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}
