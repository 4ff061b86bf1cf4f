import ArgumentParser
import Foundation
import RocketKV

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate a reply to a prompt; prints only the generated text on stdout.")

    @Argument(help: "The prompt (or use --prompt-file).")
    var prompt: String?

    @Option(name: .long, help: "Read the prompt from a UTF-8 file.")
    var promptFile: String?

    @Option(name: .long, help: "System message for the chat template.")
    var system: String?

    @Flag(name: .long, help: "Feed the prompt as-is, without the chat template (special tokens in the text are recognised).")
    var raw = false

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var sampling: SamplingOptions
    @OptionGroup var kvOptions: KVOptions

    func validate() throws {
        if prompt != nil && promptFile != nil { throw ValidationError("give either a prompt or --prompt-file, not both") }
        if prompt == nil && promptFile == nil { throw ValidationError("missing prompt: give it as an argument or with --prompt-file") }
    }

    func run() throws {
        let text = try prompt ?? readTextFile(promptFile!)
        guard !text.isEmpty else { throw CLIError.badData("the prompt is empty") }
        let loaded = try modelOptions.load()
        let model = loaded.model!
        let promptText: String
        if raw {
            promptText = text
        } else {
            var messages: [ChatMessage] = []
            if let system { messages.append(ChatMessage(role: "system", content: system)) }
            messages.append(ChatMessage(role: "user", content: text))
            promptText = try renderChat(messages, file: loaded.file, tokenizer: loaded.tokenizer)
        }
        // A chat template writes the BOS itself (`bos_token`), as transformers' apply_chat_template expects.
        let tokens = loaded.tokenizer.encode(promptText, addSpecial: raw, parseSpecial: true)
        guard !tokens.isEmpty else { throw CLIError.badData("the prompt is empty") }
        guard tokens.count < model.config.contextLength else {
            throw CLIError.badData("the prompt has \(tokens.count) tokens; the model's context is \(model.config.contextLength)")
        }
        let options = sampling.options(room: model.config.contextLength - tokens.count)
        let policy = try kvOptions.makePolicy(model: model, promptLength: tokens.count, maxNewTokens: options.maxTokens,
                                              verbose: modelOptions.verbose)
        let session = loaded.engine!.session(policy: policy)
        let generator = Generator(session: session, tokenizer: loaded.tokenizer)
        let progress = ProgressLine(label: "prefill")
        let result = try generator.generate(prompt: tokens, options: options, progress: progress.update) { piece in
            FileHandle.standardOutput.write(Data(piece.utf8))
        }
        FileHandle.standardOutput.write(Data("\n".utf8))
        let stats = policy.statistics
        printError(String(format: "prefill: %d tokens, %.1f tok/s | decode: %d tokens, %.1f tok/s | stop: %@ | kv: %d tokens stored, %.1f MiB",
                          result.promptTokens, result.prefillTokensPerSecond, result.tokens.count,
                          result.decodeTokensPerSecond, result.stopReason.rawValue, stats.storedTokens,
                          Double(stats.storedBytes) / 1_048_576))
    }
}

/// Renders messages with the model's own chat template (`ChatPrompt`); a file without a usable one is bad data.
func renderChat(_ messages: [ChatMessage], file: GGUFFile, tokenizer: Tokenizer) throws -> String {
    let prompt: ChatPrompt
    do { prompt = try ChatPrompt(file: file, tokenizer: tokenizer) } catch {
        throw CLIError.badData("\(describe(error)); use --raw and write the prompt format yourself")
    }
    return try prompt.render(messages)
}
