import ArgumentParser
import Foundation
import RocketKV
import RocketKVServer

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "An OpenAI-compatible HTTP server with batched decode and per-conversation KV caches.",
        discussion: """
            Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health, GET /metrics, \
            and a chat page at /. A request may choose its KV method with {"kv": {"method": "rocket", "budget": 256}}.
            """)

    @Option(name: .long, help: "A catalog model name or a path to a GGUF file (default: smollm2-135m).")
    var model: String?

    @Option(name: .long, help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(name: .long, help: "Port to listen on (0: any free port).")
    var port = 8080

    @OptionGroup var kvOptions: KVOptions

    @Option(name: .long, help: "Sequences decoded together in each batched step.")
    var parallel = 4

    @Option(name: .long, help: "Requests waiting for a slot before further ones get 429.")
    var queue = 64

    @Option(name: .long, help: "MiB of KV memory kept for idle conversations (least recently used dropped first).")
    var cacheRam = 1024

    @Option(name: .long, help: "Require 'Authorization: Bearer KEY' on /v1/ endpoints.")
    var apiKey: String?

    @Option(name: .long, help: "Worker threads (default: all cores).")
    var threads: Int?

    func validate() throws {
        guard (1...256).contains(parallel) else { throw ValidationError("--parallel must be between 1 and 256") }
        guard queue >= 0 else { throw ValidationError("--queue must be ≥ 0") }
        guard cacheRam >= 0 else { throw ValidationError("--cache-ram must be ≥ 0") }
        guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535") }
        if let threads, threads < 1 || threads > 64 { throw ValidationError("--threads must be between 1 and 64") }
    }

    func run() async throws {
        var c = ServerConfiguration()
        c.model = model
        c.host = host
        c.port = port
        c.kv = KVConfiguration(method: kvOptions.kv, budget: kvOptions.budget, options: try kvOptions.parsedOptions(),
                                kvType: try kvOptions.cacheType())
        c.parallel = parallel
        c.queueLimit = queue
        c.cacheBytes = cacheRam << 20
        c.apiKey = apiKey
        if let threads { c.threads = threads }
        try await OpenAIServer(configuration: c, log: { printError($0) }).run()
    }
}
