import ArgumentParser
import Foundation
import RocketKV

struct ChatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "Interactive multi-turn chat that keeps the KV cache between turns.",
        discussion: "Type a message and press Enter. /reset starts a new conversation, /exit (or end of input) quits.")

    @Option(name: .long, help: "System message.")
    var system: String?

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var sampling: SamplingOptions
    @OptionGroup var kvOptions: KVOptions

    func run() throws {
        let loaded = try modelOptions.load()
        let model = loaded.model!
        let interactive = isatty(STDIN_FILENO) != 0
        let context = model.config.contextLength
        let makePolicy = { (promptLength: Int) in
            try kvOptions.makePolicy(model: model, promptLength: promptLength, maxNewTokens: min(sampling.maxTokens, context - promptLength),
                                     verbose: modelOptions.verbose)
        }
        func newConversation() -> ChatConversation {
            ChatConversation(engine: loaded.engine!, file: loaded.file, tokenizer: loaded.tokenizer, system: system, makePolicy: makePolicy)
        }
        var conversation = newConversation()
        while true {
            if interactive { FileHandle.standardError.write(Data("> ".utf8)) }
            guard let line = readLine(strippingNewline: true) else { break }
            let message = line.trimmingCharacters(in: .whitespaces)
            if message.isEmpty { continue }
            if message == "/exit" || message == "/quit" { break }
            if message == "/reset" {
                conversation = newConversation()
                printError("(new conversation)")
                continue
            }
            // A failed turn (too long, a template error) leaves the conversation as it was; the user can go on or /reset.
            let result: GenerationResult
            do {
                result = try conversation.reply(to: message, sampling: sampling) { piece in
                    FileHandle.standardOutput.write(Data(piece.utf8))
                }
            } catch {
                printError("Error: \(describe(error))")
                continue
            }
            FileHandle.standardOutput.write(Data("\n".utf8))
            if modelOptions.verbose {
                printError(String(format: "[%d new prompt tokens, %.1f tok/s prefill, %d tokens at %.1f tok/s, context %d/%d]",
                                  result.promptTokens, result.prefillTokensPerSecond, result.tokens.count,
                                  result.decodeTokensPerSecond, conversation.position, model.config.contextLength))
            }
        }
    }
}

/// A chat whose KV cache persists across turns: each turn feeds only the new part of the rendered conversation.
///
/// The KV policy is created at the first turn, when the prompt length its budget plan depends on is known.
struct ChatConversation {
    let engine: Engine
    let file: GGUFFile
    let tokenizer: Tokenizer
    let makePolicy: (Int) throws -> KVPolicy
    private var session: InferenceSession?
    private var messages: [ChatMessage] = []
    /// The conversation text the session has processed so far (prompts and replies).
    private var processedText = ""

    init(engine: Engine, file: GGUFFile, tokenizer: Tokenizer, system: String?, makePolicy: @escaping (Int) throws -> KVPolicy) {
        self.engine = engine
        self.file = file
        self.tokenizer = tokenizer
        self.makePolicy = makePolicy
        if let system { messages.append(ChatMessage(role: "system", content: system)) }
    }

    /// Tokens processed so far.
    var position: Int { session?.position ?? 0 }

    /// Generates the reply to `message`. A turn that fails before generating (it does not fit, the template
    /// fails) changes nothing.
    mutating func reply(to message: String, sampling: SamplingOptions, onText: (String) -> Void) throws -> GenerationResult {
        let messages = self.messages + [ChatMessage(role: "user", content: message)]
        let rendered = try renderChat(messages, file: file, tokenizer: tokenizer)
        guard rendered.hasPrefix(processedText) else {
            throw CLIError.badData("the chat template re-rendered earlier turns differently; cannot continue the cached conversation (/reset)")
        }
        let delta = String(rendered.dropFirst(processedText.count))
        let tokens = tokenizer.encode(delta, addSpecial: false, parseSpecial: true)   // the template writes the BOS
        let room = (session?.remainingContext ?? engine.model.config.contextLength) - tokens.count
        guard room > 0 else {
            throw CLIError.badData("the message does not fit in the context (\(position) + \(tokens.count) of \(engine.model.config.contextLength) tokens); use /reset")
        }
        let session = try self.session ?? engine.session(policy: makePolicy(tokens.count))
        self.session = session
        let result = try Generator(session: session, tokenizer: tokenizer).generate(prompt: tokens, options: sampling.options(room: room), onText: onText)
        self.messages = messages + [ChatMessage(role: "assistant", content: result.text)]
        processedText = rendered + result.text
        return result
    }
}
