// Use RocketKV from Swift: load a model, stream a reply with RocketKV at budget 256.
//
//     swift run -c release StreamReply "What is a rocket?"
import RocketKV

let path = try ModelStore.defaultModelPath()   // SmolLM2-135M, fetched and verified on first use
let file = try GGUFFile(path: path)
let tokenizer = try Tokenizer(gguf: file)
let scheduler = BatchScheduler(engine: try Engine(file: file), tokenizer: tokenizer)

let question = CommandLine.arguments.dropFirst().first ?? "What is a rocket?"
let text = try ChatPrompt(file: file, tokenizer: tokenizer).render([ChatMessage(role: "user", content: question)])
let prompt = tokenizer.encode(text, addSpecial: false)   // the chat template writes the BOS itself
var options = GenerationOptions()
options.maxTokens = 64

for try await event in try scheduler.generate(prompt: prompt, options: options, kv: KVConfiguration(method: "rocket", budget: 256)) {
    switch event {
    case .started(let promptTokens, _): print("[\(promptTokens) prompt tokens]")
    case .text(let piece): print(piece, terminator: "")
    case .finished(let report):
        print("\n[\(report.result.tokens.count) tokens, stop: \(report.result.stopReason.rawValue), KV \(report.kv.storedBytes) bytes stored]")
    }
}
scheduler.shutdown()
