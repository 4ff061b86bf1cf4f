import ArgumentParser
import Foundation
import RocketKV

/// `rocketkv bench`: prefill and decode speed per KV method × KV row type × budget × context, llama-bench style.
///
/// Every configuration and repetition runs in a fresh child process (this executable with the hidden
/// `bench-child` subcommand), so peak RSS is per run and no state (caches, allocations) is shared.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure prefill and decode speed, memory and bandwidth per KV method, KV type, budget and context.")

    @Option(name: .long, help: "Path to a GGUF model (default: SmolLM2-135M-Instruct Q4_1).")
    var model: String?

    @Option(name: .long, help: "Comma-separated KV methods.")
    var kv = "full"

    @Option(name: .long, help: "Comma-separated token budgets (methods without a budget ignore it).")
    var budget: String?

    @Option(name: .customLong("kv-type"), help: "Comma-separated KV cache types: f16, q8_0, q4_0, or KEY/VALUE types such as q8_0/q4_0.")
    var kvType = "f16"

    @Option(name: .long, help: "Comma-separated context lengths (prompt tokens prefilled before decoding).")
    var context = "512,2048,8192"

    @Option(name: .long, parsing: .unconditional, help: "Tokens decoded after the prefill.")
    var gen = 64

    @Option(name: .long, help: "Comma-separated numbers of sequences decoded together, one batched forward pass per step as `serve` runs them (decode tok/s is then their aggregate).")
    var batch = "1"

    @Option(name: .long, parsing: .unconditional, help: "Repetitions per configuration (each in a fresh process).")
    var repetitions = 3

    @Option(name: .long, parsing: .unconditional, help: "Threads (default: all cores).")
    var threads: Int?

    @Option(name: .long, parsing: .singleValue, help: "Method option key=value (repeatable), given to each listed method that has it.")
    var kvOption: [String] = []

    @Flag(help: "Also report where a decode step's time goes: weight matmuls, the KV method's attention (HSA's selection and attention as thread-time), the rest, the pool's idle time and fork-joins per token.")
    var breakdown = false

    @Flag(name: .long, help: "One JSON object per configuration per line on stdout instead of the table.")
    var json = false

    func validate() throws {
        try BenchLimits.check(gen: gen, contexts: try contexts, budgets: try budgets.compactMap { $0 }, threads: threads)
        guard try batches.allSatisfy(BenchLimits.batch.contains) else { throw ValidationError("--batch values must be in \(BenchLimits.batch)") }
        guard (1...100).contains(repetitions) else { throw ValidationError("--repetitions must be in 1...100") }
        try usage {
            for method in methods { _ = try KVMethods.named(method) }
            _ = try kvTypes
        }
    }

    var contexts: [Int] { get throws { try BenchLimits.integers(context, option: "--context") } }
    var batches: [Int] { get throws { try BenchLimits.integers(batch, option: "--batch") } }
    var budgets: [Int?] { get throws { try budget.map { try BenchLimits.integers($0, option: "--budget") } ?? [nil] } }
    var methods: [String] { kv.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
    var kvTypes: [KVCacheType] {
        get throws { try kvType.split(separator: ",", omittingEmptySubsequences: false).map { try KVCacheType(parsing: $0.trimmingCharacters(in: .whitespaces)) } }
    }

    func run() throws {
        let threadCount = threads ?? ProcessInfo.processInfo.activeProcessorCount
        // Fetch what the children need once, before timing anything.
        let modelPath = try resolveModel(model)
        _ = try Haystack.paulGraham(log: { printError($0) })
        try KVMethods.checkOptions(try parseKVOptions(kvOption), usedBy: methods)

        printError("measuring memory read bandwidth (\(threadCount) threads)...")
        // In a child: the buffer must not raise the high-water RSS that the bench children inherit.
        let bandwidth = try measureBandwidthInChild(threads: threadCount)
        printError(String(format: "read bandwidth: %.1f GB/s; kernels: %@", bandwidth / 1e9, Ops.kernelLevel))

        let contexts = try contexts, budgets = try budgets, types = try kvTypes, batches = try batches
        let configs = methods.flatMap { m in types.flatMap { t in budgets.flatMap { b in contexts.flatMap { c in batches.map { (m, t, b, c, $0) } } } } }
        // Repetitions are interleaved (every configuration once, then again): on a shared machine the load
        // drifts over minutes, and interleaving lets every configuration see the same mix of it.
        var runs = [[[String: Any]]](repeating: [], count: configs.count)
        var failures = [String?](repeating: nil, count: configs.count)
        for rep in 0..<repetitions {
            for (index, (method, type, budget, context, batch)) in configs.enumerated() where failures[index] == nil {
                let label = "run \(rep + 1)/\(repetitions), [\(index + 1)/\(configs.count)] \(method) \(type)\(budget.map { " budget \($0)" } ?? "") context \(context)"
                    + (batch > 1 ? " × \(batch) sequences" : "")
                FileHandle.standardError.write(Data("\r\u{1B}[K\(label)".utf8))
                let prefill = ProgressLine(label: label + ": prefill")
                do {
                    runs[index].append(try runChild(model: modelPath, method: method, type: type, budget: budget, context: context,
                                                    batch: batch, threads: threadCount, progress: prefill.update))
                } catch {
                    failures[index] = "\(error)"
                }
            }
        }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
        if !json { printTableHeader() }
        var rows: [[String: Any]] = []
        for (index, (method, type, budget, context, batch)) in configs.enumerated() {
            if let failure = failures[index] {
                printError("\(method) \(type) budget \(budget.map(String.init) ?? "-") context \(context) batch \(batch): \(failure)")
                continue
            }
            let row = summarize(runs[index], method: method, type: type, budget: budget, context: context, batch: batch, bandwidth: bandwidth,
                                threads: threadCount)
            rows.append(row)
            if json {
                let data = try JSONSerialization.data(withJSONObject: row, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
            } else {
                printTableRow(row)
            }
        }
        fflush(nil)  // every output stream, stdout included (the C global `stdout` is not concurrency-safe in Swift 6)
        if !json {
            print(String(format: "read bandwidth %.1f GB/s (%d threads), %@ kernels; bound = bandwidth / (weight + KV bytes read per token; with seqs > 1 a step reads the weights once for all, and tok/s is their aggregate); ± is half the range over %d runs",
                         bandwidth / 1e9, threadCount, Ops.kernelLevel, repetitions))
            if breakdown { printBreakdown(rows) }
        }
    }

    /// Runs one configuration in a child; its prefill progress (`progress DONE TOTAL` lines on its stderr) goes to `progress`.
    private func runChild(model: String, method: String, type: KVCacheType, budget: Int?, context: Int, batch: Int, threads: Int,
                          progress: @escaping (Int, Int) -> Void) throws -> [String: Any] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: BenchCommand.executablePath)
        var arguments = ["bench-child", "--model", model, "--method", method, "--kv-type", type.description, "--context", String(context),
                         "--gen", String(gen), "--batch", String(batch), "--threads", String(threads), "--progress"]
        if let budget { arguments += ["--budget", String(budget)] }
        for option in kvOption { arguments += ["--kv-option", option] }
        if breakdown { arguments.append("--breakdown") }
        process.arguments = arguments
        let stdoutPipe = Pipe(), stderrPipe = Pipe()
        process.standardOutput = stdoutPipe
        process.standardError = stderrPipe
        try process.run()
        // Drain stderr concurrently (a full pipe would block the child), passing progress lines on as they come.
        final class Box: @unchecked Sendable { var data = Data() }   // written by the reader thread, read once it has finished
        let errorBox = Box()
        nonisolated(unsafe) let progress = progress   // called from the reader thread only
        let errorReader = Thread {
            let handle = stderrPipe.fileHandleForReading
            var pending = Data()
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                pending += chunk
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = pending[pending.startIndex..<newline]
                    pending = pending[(newline + 1)...]
                    let fields = String(decoding: line, as: UTF8.self).split(separator: " ")
                    if fields.count == 3, fields[0] == "progress", let done = Int(fields[1]), let total = Int(fields[2]) {
                        progress(done, total)
                    } else {
                        errorBox.data += line + [UInt8(ascii: "\n")]
                    }
                }
            }
            errorBox.data += pending
        }
        errorReader.start()
        let output = stdoutPipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        while !errorReader.isFinished { usleep(1000) }
        guard process.terminationStatus == 0,
              let line = String(decoding: output, as: UTF8.self).split(separator: "\n").last,
              let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            let message = String(decoding: errorBox.data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw ValidationError("child failed (status \(process.terminationStatus)): \(message.split(separator: "\n").last ?? "")")
        }
        return object
    }

    static var executablePath: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    private func summarize(_ runs: [[String: Any]], method: String, type: KVCacheType, budget: Int?, context: Int, batch: Int,
                           bandwidth: Double, threads: Int) -> [String: Any] {
        func values(_ key: String) -> [Double] { runs.compactMap { ($0[key] as? NSNumber)?.doubleValue } }
        func median(_ key: String) -> Double { BenchStats.median(values(key)) }
        func spread(_ key: String) -> Double { BenchStats.halfRange(values(key)) }
        let decode = median("decode_tok_s")
        let weightBytes = median("weight_bytes_per_token"), kvRead = median("kv_bytes_read_per_token")
        let bytesPerToken = weightBytes + kvRead
        var row: [String: Any] = [
            "method": method,
            "kv_type": type.description,
            "budget": budget.map { $0 as Any } ?? NSNull(),
            "context": context,
            "batch": batch,
            "gen": gen,
            "threads": threads,
            "repetitions": runs.count,
            "prefill_tok_s": median("prefill_tok_s"),
            "prefill_tok_s_spread": spread("prefill_tok_s"),
            "decode_tok_s": decode,
            "decode_tok_s_spread": spread("decode_tok_s"),
            "decode_ms": decode > 0 ? 1000 / decode : 0,
            "decode_ms_spread": BenchStats.halfRange(values("decode_tok_s").map { 1000 / $0 }),
            "weight_bytes_per_token": Int(weightBytes),
            "kv_bytes_read_per_token": Int(kvRead),
            "kv_bytes_stored": Int(median("kv_bytes_stored")),
            "kv_bytes_stored_method_layers": Int(median("kv_bytes_stored_method_layers")),
            "peak_rss_bytes": Int(median("peak_rss_bytes")),
            "decode_rss_bytes": Int(median("decode_rss_bytes")),
            "achieved_gbs": bytesPerToken * decode / 1e9,
            "bandwidth_gbs": bandwidth / 1e9,
            "kernels": Ops.kernelLevel,
            "bound_tok_s": bytesPerToken > 0 ? bandwidth / bytesPerToken : 0,
        ]
        if let plan = runs.first?["plan"] { row["plan"] = plan }
        for key in BenchChildCommand.breakdownKeys where runs.contains(where: { $0[key] != nil }) { row[key] = median(key) }
        return row
    }

    private func printTableHeader() {
        print("| method | kv type | budget | context | seqs | prefill tok/s | decode tok/s | ms/tok | bound tok/s | GB/s | KV read/tok MB | KV stored MB | peak RSS MB | decode RSS MB |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    }

    private func printTableRow(_ r: [String: Any]) {
        func d(_ k: String) -> Double { (r[k] as? NSNumber)?.doubleValue ?? 0 }
        let budget = (r["budget"] as? Int).map(String.init) ?? "-"
        print(String(format: "| %@ | %@ | %@ | %d | %d | %.1f ± %.1f | %.1f ± %.1f | %.2f | %.1f | %.2f | %.2f | %.1f | %.1f | %.1f |",
                     r["method"] as! String, r["kv_type"] as! String, budget, r["context"] as! Int, r["batch"] as! Int,
                     d("prefill_tok_s"), d("prefill_tok_s_spread"),
                     d("decode_tok_s"), d("decode_tok_s_spread"), d("decode_ms"), d("bound_tok_s"), d("achieved_gbs"),
                     d("kv_bytes_read_per_token") / 1e6, d("kv_bytes_stored") / 1e6, d("peak_rss_bytes") / 1e6,
                     d("decode_rss_bytes") / 1e6))
    }

    /// Where a decode step's time goes, per configuration (medians over the runs; ms per decoded token, a step's time / seqs).
    private func printBreakdown(_ rows: [[String: Any]]) {
        print("")
        print("| method | kv type | budget | context | seqs | ms/tok | matmul ms | attention ms | other ms | pool idle ms (all threads) | fork-joins/tok | HSA selection ms (all threads) | HSA attention ms (all threads) |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows {
            func d(_ k: String) -> Double { (r[k] as? NSNumber)?.doubleValue ?? 0 }
            print(String(format: "| %@ | %@ | %@ | %d | %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.1f | %.2f | %.2f |",
                         r["method"] as! String, r["kv_type"] as! String, (r["budget"] as? Int).map(String.init) ?? "-", r["context"] as! Int,
                         r["batch"] as! Int,
                         d("decode_ms"), d("breakdown_matmul_ms"), d("breakdown_attention_ms"), d("breakdown_other_ms"),
                         d("breakdown_pool_idle_ms"), d("breakdown_jobs_per_token"), d("breakdown_hsa_selection_thread_ms"),
                         d("breakdown_hsa_attention_thread_ms")))
        }
        print("matmul and attention: wall time on the forward pass's thread (pool jobs inside them included); other: the rest of a step; "
              + "pool idle: thread-time the workers waited inside jobs for the slowest one; HSA selection (page bounds, dimensions, page "
            + "scores, top pages, gather) and HSA attention: thread-time inside attention summed over the workers (0 for methods without HSA)")
    }

    private func measureBandwidthInChild(threads: Int) throws -> Double {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: BenchCommand.executablePath)
        process.arguments = ["bench-child", "--bandwidth", "--threads", String(threads)]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0, let value = Double(String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw ValidationError("bandwidth measurement failed")
        }
        return value
    }
}

enum BenchStats {
    static func median(_ v: [Double]) -> Double {
        guard !v.isEmpty else { return 0 }
        let s = v.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
    static func halfRange(_ v: [Double]) -> Double { v.isEmpty ? 0 : ((v.max()! - v.min()!) / 2) }
}

/// What `bench` and `bench-child` accept: contexts up to 262,144 tokens (past every catalog model's trained
/// context, as speed measurements), up to 100,000 decoded tokens, budgets of at least 16.
enum BenchLimits {
    static let contexts = 1...262_144, gen = 1...100_000, threads = 1...64, batch = 1...64

    static func check(gen: Int, contexts: [Int], budgets: [Int], threads: Int?) throws {
        guard Self.gen.contains(gen) else { throw ValidationError("--gen must be in \(Self.gen)") }
        guard !contexts.isEmpty, contexts.allSatisfy(Self.contexts.contains) else { throw ValidationError("--context values must be in \(Self.contexts)") }
        guard budgets.allSatisfy({ $0 >= 16 }) else { throw ValidationError("--budget values must be at least 16") }
        if let threads, !Self.threads.contains(threads) { throw ValidationError("--threads must be in \(Self.threads)") }
    }

    /// A comma-separated list of integers; an item that is not one is named in the error.
    static func integers(_ list: String, option: String) throws -> [Int] {
        try list.split(separator: ",", omittingEmptySubsequences: false).map { item in
            let text = item.trimmingCharacters(in: .whitespaces)
            guard let value = Int(text) else { throw ValidationError("\(option): '\(text)' is not an integer") }
            return value
        }
    }
}

/// The prompt of the bench: `count` tokens of the Paul Graham essays (the corpus repeats when shorter).
enum BenchText {
    static func tokens(_ count: Int, tokenizer: Tokenizer) throws -> [Int] {
        let haystack = try Haystack.paulGraham(log: { printError($0) })
        // About 1.4 tokens per word in this corpus; take enough words, then cut to the exact count.
        let tokens = tokenizer.encode(haystack.prefix(words: count).joined(separator: " "), addSpecial: false, parseSpecial: false)
        guard tokens.count >= count else { throw ValidationError("the essays gave only \(tokens.count) of \(count) tokens") }
        return Array(tokens.prefix(count))
    }
}

/// One bench run (hidden): prints one JSON line with the measurements of this process.
struct BenchChildCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench-child", abstract: "One bench run (internal).",
                                                    shouldDisplay: false)

    @Flag(help: "Only measure the memory read bandwidth (bytes/s) and print it.") var bandwidth = false
    @Option var model: String = ""
    @Option var method: String = "full"
    @Option(parsing: .unconditional) var budget: Int?
    @Option(parsing: .unconditional) var context: Int = 512
    @Option(parsing: .unconditional) var gen: Int = 64
    @Option(parsing: .unconditional) var batch: Int = 1
    @Option(parsing: .unconditional) var threads: Int = 1
    @Option(parsing: .singleValue) var kvOption: [String] = []
    @Flag(help: "Report the prefill's progress as `progress DONE TOTAL` lines on stderr.") var progress = false
    @Option var kvType = "f16"
    @Flag var breakdown = false

    /// The per-token breakdown a child reports with `--breakdown` (ms; fork-joins as a count).
    static let breakdownKeys = ["breakdown_matmul_ms", "breakdown_attention_ms", "breakdown_other_ms", "breakdown_pool_idle_ms",
                                "breakdown_jobs_per_token", "breakdown_hsa_selection_thread_ms", "breakdown_hsa_attention_thread_ms"]

    func validate() throws {
        try BenchLimits.check(gen: gen, contexts: [context], budgets: budget.map { [$0] } ?? [], threads: threads)
        guard BenchLimits.batch.contains(batch) else { throw ValidationError("--batch must be in \(BenchLimits.batch)") }
        try usage {
            _ = try KVMethods.named(method)
            _ = try KVCacheType(parsing: kvType)
        }
    }

    func run() throws {
        if bandwidth {
            print(ThreadPool(threads: threads).install { MemoryBandwidth.measureRead() })
            return
        }
        let file = try GGUFFile(path: model)
        let tokenizer = try Tokenizer(gguf: file)
        let engine = try Engine(file: file, threads: threads)
        try tokenizer.checkFits(engine.model.config)
        let llama = engine.model
        let options = try KVMethods.options(try parseKVOptions(kvOption), for: method)
        let prompt = try BenchText.tokens(context, tokenizer: tokenizer)
        func makeSession() throws -> InferenceSession {
            let kvContext = KVMethodContext(model: llama, budget: budget, promptLength: context, maxNewTokens: gen, options: options,
                                            kvType: try KVCacheType(parsing: kvType))
            return engine.session(policy: try KVMethods.make(method, context: kvContext))
        }
        func argmax(_ logits: UnsafeBufferPointer<Float>) -> Int {
            var best = 0
            for i in 1..<logits.count where logits[i] > logits[best] { best = i }
            return best
        }
        // Warm-up (page in the weights, start the threads), as llama-bench does.
        do {
            let warm = try makeSession()
            let logits = try warm.prefill(Array(prompt.prefix(min(32, prompt.count))), allowBeyondContext: true)
            _ = try warm.decode(logits.indices.max(by: { logits[$0] < logits[$1] })!, allowBeyondContext: true)
        }

        // `batch` sequences, each prompt the bench text rotated by a different amount, decoded together.
        let sessions = try (0..<batch).map { _ in try makeSession() }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let report: ((Int, Int) -> Void)? = progress ? { done, total in printError("progress \(done) \(total)") } : nil
        var next = try sessions.enumerated().map { i, session in
            let shift = i * 997 % prompt.count
            let logits = try session.prefill(Array(prompt[shift...] + prompt[..<shift]), allowBeyondContext: true, progress: report)
            return logits.indices.max(by: { logits[$0] < logits[$1] })!
        }
        let t1 = DispatchTime.now().uptimeNanoseconds
        let vocabulary = llama.config.vocabularySize
        let state = ForwardState()
        var kvRead = 0
        var decodeRSS = 0
        StepProfile.reset()
        StepProfile.enabled = breakdown
        let t2 = DispatchTime.now().uptimeNanoseconds
        for step in 0..<gen {
            let logits = try engine.pool.install { try InferenceSession.decode(next, sessions: sessions, state: state, allowBeyondContext: true) }
            next = (0..<batch).map { argmax(UnsafeBufferPointer(rebasing: logits[($0 * vocabulary)..<(($0 + 1) * vocabulary)])) }
            if step == gen - 1 {
                kvRead = sessions.reduce(0) { $0 + $1.policy.statistics.bytesReadLastStep } / batch
            }
            if step == gen / 2 { decodeRSS = BenchChildCommand.residentBytes() }
        }
        let t3 = DispatchTime.now().uptimeNanoseconds
        StepProfile.enabled = false
        // On a model with sliding-window layers, what the method itself stores (the windows are the same for every method).
        let methodCaches = sessions.flatMap { (($0.policy as? LayeredKV)?.caches.filter { !($0 is SlidingWindowKV) }) ?? [$0.policy] }
        let methodStored = methodCaches.reduce(0) { $0 + $1.statistics.storedBytes }
        var usage = rusage()
        getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
        let tokens = Double(gen * batch)
        var result: [String: Any] = [
            "prefill_tok_s": Double(context * batch) / (Double(t1 - t0) / 1e9),
            "decode_tok_s": tokens / (Double(t3 - t2) / 1e9),
            // Read once per step for every sequence.
            "weight_bytes_per_token": llama.weightBytesPerToken / batch,
            "kv_bytes_read_per_token": kvRead,
            "kv_bytes_stored": sessions.reduce(0) { $0 + $1.policy.statistics.storedBytes },
            "kv_bytes_stored_method_layers": methodStored,
            "peak_rss_bytes": Int(usage.ru_maxrss) * 1024,
            "decode_rss_bytes": decodeRSS,
        ]
        if let plan = sessions[0].policy.planDescription { result["plan"] = plan }
        if breakdown {
            let p = StepProfile.totals, perToken = 1e6 * tokens
            let matmul = Double(p.nanoseconds(.matmul)), attention = Double(p.nanoseconds(.attention))
            let values = [matmul / perToken, attention / perToken, (Double(t3 - t2) - matmul - attention) / perToken,
                          Double(p.idleNanoseconds) / perToken, Double(p.jobs) / tokens,
                          Double(p.threadNanoseconds(.hsaSelection)) / perToken, Double(p.threadNanoseconds(.hsaAttention)) / perToken]
            for (key, value) in zip(Self.breakdownKeys, values) { result[key] = value }
        }
        let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }

    /// Resident set size now, from /proc/self/statm (0 where it does not exist).
    static func residentBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
