/// A model's chat template, parsed once, with the model's BOS and EOS texts: renders conversations to prompt text.
/// The template is the file's own (`tokenizer.chat_template`) or the built-in one of its architecture.
public struct ChatPrompt: Sendable {
    public let template: ChatTemplate
    let bosText: String
    let eosText: String

    /// Throws when the file has no usable chat template.
    public init(file: GGUFFile, tokenizer: Tokenizer) throws {
        let architecture = file.metadata["general.architecture"]?.stringValue ?? ""
        guard let source = file.metadata["tokenizer.chat_template"]?.stringValue ?? ChatTemplate.builtInSource(forArchitecture: architecture) else {
            throw InferenceError("the model has no chat template (tokenizer.chat_template)")
        }
        template = try ChatTemplate(source: source)
        bosText = tokenizer.bosID.map { String(decoding: tokenizer.bytes(of: $0), as: UTF8.self) } ?? ""
        eosText = tokenizer.eosID.map { String(decoding: tokenizer.bytes(of: $0), as: UTF8.self) } ?? ""
    }

    /// The prompt text of `messages`, ending with the assistant's turn opening.
    public func render(_ messages: [ChatMessage]) throws -> String {
        try template.render(messages: messages, addGenerationPrompt: true, bosToken: bosText, eosToken: eosText)
    }
}
