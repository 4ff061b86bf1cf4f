import ArgumentParser
import Foundation
import RocketKV

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect", abstract: "Show a model's architecture, sizes, tensor types and chat template.")

    @OptionGroup var modelOptions: ModelOptions

    func run() throws {
        let loaded = try modelOptions.load()
        let file = loaded.file, c = loaded.model!.config
        print("file:            \(file.path)")
        print("GGUF version:    \(file.version), \(file.tensors.count) tensors, \(file.metadata.count) metadata keys, \(file.fileSize / 1_048_576) MiB")
        print("name:            \(c.name)")
        print("architecture:    \(c.architecture)")
        print("layers:          \(c.layers)")
        print("embedding:       \(c.embeddingLength), feed-forward \(c.feedForwardLength)")
        print("heads:           \(c.queryHeads) query, \(c.kvHeads) KV (group size \(c.queryHeads / c.kvHeads)), head dim \(c.headDim)")
        print("context length:  \(c.contextLength)")
        print("RoPE:            base \(c.ropeBase), \(c.ropeDims) dims")
        print("vocabulary:      \(c.vocabularySize) (\(file.metadata["tokenizer.ggml.model"]?.stringValue ?? "?"), pre-tokenizer \(file.metadata["tokenizer.ggml.pre"]?.stringValue ?? "default"))")
        var counts: [String: (Int, Int)] = [:]
        for t in file.tensors { let e = counts[t.type.name] ?? (0, 0); counts[t.type.name] = (e.0 + 1, e.1 + t.byteCount) }
        let types = counts.sorted { $0.value.1 > $1.value.1 }.map { "\($0.key) ×\($0.value.0) (\($0.value.1 / 1_048_576) MiB)" }
        print("tensor types:    \(types.joined(separator: ", "))")
        let fullContext = Double(c.kvBytesPerToken) * Double(c.contextLength) / 1_048_576
        print("KV cache (f16):  \(c.kvBytesPerToken) bytes per token, \(String(format: "%.0f", fullContext)) MiB at full context")
        let template = file.metadata["tokenizer.chat_template"]?.stringValue
        print("chat template:   \(template.map { "\($0.count) characters" } ?? "none")")
        if modelOptions.verbose, let template { print(template) }
    }
}
