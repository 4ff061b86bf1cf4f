import Foundation
import FuzzDriver
import RocketKV
import RocketKVServer

/// The default model (fetched on first use): its tokenizer, chat template and context are what requests are
/// checked against, and its shape is what a request's KV method is planned for.
let (file, tokenizer, model): (GGUFFile, Tokenizer, LanguageModel) = {
    do {
        let file = try GGUFFile(path: try ModelStore.path(of: ModelStore.defaultModel))
        return (file, try Tokenizer(gguf: file), try loadModel(file: file))
    } catch {
        fatalError("cannot load the default model: \(error)")
    }
}()

/// The target is built for each input: a chat template parsed once and kept until exit is reported as leaked by
/// LeakSanitizer's exit check (Swift keeps enum tags in pointers' spare bits, which its pointer scan misses).
func makeTarget() -> RequestTarget {
    RequestTarget(modelID: ModelStore.defaultModel.name, tokenizer: tokenizer, chat: try? ChatPrompt(file: file, tokenizer: tokenizer),
                  contextLength: model.config.contextLength, defaultKV: KVConfiguration(method: "rocket", budget: 256))
}

/// One input: the first byte picks the endpoint (chat or completions), the rest is the request body. A request
/// the server accepts must then pass what the scheduler does before it starts a sequence: the KV method's
/// validation and its plan for this prompt and generation length (the allocation a hostile `kv` could inflate).
func fuzzRequest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let body = Data(bytes: data + 1, count: size - 1), target = makeTarget()
    guard let request = try? PreparedRequest(body: body, chat: data[0] & 1 == 0, for: target) else { return 0 }
    precondition(!request.prompt.isEmpty && request.prompt.count < target.contextLength, "an accepted prompt must fit the context")
    precondition(request.options.maxTokens >= 0 && request.prompt.count + request.options.maxTokens <= target.contextLength,
                 "max_tokens must be clamped to the context")
    if (try? request.kv.validate(for: model)) != nil {
        _ = try? request.kv.makePolicy(model: model, promptLength: request.prompt.count, maxNewTokens: request.options.maxTokens)
    }
    return 0
}

fuzzMain { data, size in fuzzRequest(data ?? UnsafePointer(bitPattern: 1)!, size) }
