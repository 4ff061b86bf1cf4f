import FuzzDriver
import RocketKV

let messages = [ChatMessage(role: "system", content: "You are helpful."), ChatMessage(role: "user", content: "Hi <b>there</b>"),
                ChatMessage(role: "assistant", content: "Hello!"), ChatMessage(role: "user", content: "What is 2+2?")]

/// One input: a chat template (lossily decoded as UTF-8), parsed and rendered with a four-message chat.
/// Errors (syntax, limits) are expected; a trap, a sanitizer report or a hang is a finding.
func fuzzTemplate(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let source = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    guard let template = try? ChatTemplate(source: source) else { return 0 }
    _ = try? template.render(messages: messages, addGenerationPrompt: true, bosToken: "<s>", eosToken: "</s>")
    return 0
}

fuzzMain { data, size in fuzzTemplate(data ?? UnsafePointer(bitPattern: 1)!, size) }
