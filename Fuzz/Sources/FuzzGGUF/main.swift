import FuzzDriver
import RocketKV

/// One input: parse it as a GGUF image; if it parses, read what the engine reads from a model file: the
/// hyper-parameters, the tokenizer, the weights (shapes and types) and the chat template. Errors are expected;
/// a trap, a sanitizer report or a hang is a finding.
func fuzzGGUF(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let file = try? GGUFFile(bytes: Array(UnsafeBufferPointer(start: data, count: size))) else { return 0 }
    if let tokenizer = try? Tokenizer(gguf: file) {
        _ = tokenizer.decode(tokenizer.encode("Hello <|im_start|> world 123", addSpecial: true, parseSpecial: true))
        if let model = try? loadModel(file: file) { try? tokenizer.checkFits(model.config) }
    }
    if let source = file.metadata["tokenizer.chat_template"]?.stringValue, let template = try? ChatTemplate(source: source) {
        _ = try? template.render(messages: [ChatMessage(role: "user", content: "hi")], addGenerationPrompt: true, bosToken: "<s>", eosToken: "</s>")
    }
    return 0
}

fuzzMain { data, size in fuzzGGUF(data ?? UnsafePointer(bitPattern: 1)!, size) }
