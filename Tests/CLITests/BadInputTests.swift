import Foundation
import RocketKV
import TestSupport
import XCTest

/// The built `rocketkv` binary on a table of bad inputs — options, files, model metadata, chat templates,
/// conversations — each checked for its exit code (sysexits: 64 usage, 65 bad data, 66 missing input,
/// 73 cannot create output; never a crash or a hang) and the first line of stderr, which must name the problem.
///
/// The hostile model files are copies of the tiny random-weight Llama 3 (`$ROCKETKV_HOME/tiny/llama3.gguf`,
/// written by `scripts/make_tiny_models.py --write-models`, as `.ci/run` does) with one thing changed.
final class BadInputTests: XCTestCase {
    struct Case {
        let name: String
        let arguments: [String]
        var stdin = ""
        let status: Int32
        /// Text the first line of stderr must contain.
        let says: String
    }

    static let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("rocketkv")
    var scratch: URL!

    override func setUpWithError() throws {
        guard FileManager.default.isExecutableFile(atPath: Self.binary.path) else {
            throw XCTSkip("\(Self.binary.path) is not built (run the tests with `swift test`, which builds every target)")
        }
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("rocketkv-badinput-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        if let scratch { try? FileManager.default.removeItem(at: scratch) }
    }

    // MARK: - Options

    func testBadOptionsAreUsageErrors() throws {
        let model = try tinyModel()
        let m = ["--model", model]
        try check([
            Case(name: "unknown command", arguments: ["frobnicate"], status: 64, says: "frobnicate"),
            Case(name: "unknown option", arguments: ["generate", "--frob", "x"], status: 64, says: "--frob"),
            Case(name: "negative max tokens", arguments: ["generate", "--max-tokens", "-1", "hi"], status: 64, says: "--max-tokens"),
            Case(name: "non-numeric max tokens", arguments: ["generate", "--max-tokens", "many", "hi"], status: 64, says: "--max-tokens"),
            Case(name: "infinite temperature", arguments: ["generate", "--temperature", "inf", "hi"], status: 64, says: "--temperature"),
            Case(name: "NaN temperature", arguments: ["generate", "--temperature", "nan", "hi"], status: 64, says: "--temperature"),
            Case(name: "NaN top-p", arguments: ["generate", "--top-p", "nan", "hi"], status: 64, says: "--top-p"),
            Case(name: "infinite repeat penalty", arguments: ["generate", "--repeat-penalty", "inf", "hi"], status: 64, says: "--repeat-penalty"),
            Case(name: "zero threads", arguments: ["generate", "--threads", "0", "hi"], status: 64, says: "--threads"),
            Case(name: "no prompt", arguments: ["generate"], status: 64, says: "prompt"),
            Case(name: "unknown method", arguments: ["generate", "--kv", "nosuch", "hi"], status: 64, says: "nosuch"),
            Case(name: "method without budget", arguments: ["generate", "--kv", "rocket", "hi"], status: 64, says: "--budget"),
            Case(name: "tiny budget", arguments: ["generate", "--kv", "rocket", "--budget", "3", "hi"], status: 64, says: "--budget"),
            Case(name: "kv option without =", arguments: ["generate", "--kv-option", "window", "hi"], status: 64, says: "key=value"),
            Case(name: "unknown kv option", arguments: ["generate", "--kv", "rocket", "--budget", "64", "--kv-option", "nosuchkey=1"] + m + ["hi"],
                 status: 64, says: "nosuchkey"),
            Case(name: "bad kv option value", arguments: ["generate", "--kv", "rocket", "--budget", "64", "--kv-option", "split=bogus"] + m + ["hi"],
                 status: 64, says: "split"),
            Case(name: "budget near Int.max", arguments: ["generate", "--kv", "rocket", "--budget", "9223372036854775807"] + m + ["hi"],
                 status: 64, says: "--budget"),
            Case(name: "huge HSA page", arguments: ["generate", "--kv", "hsa", "--budget", "64", "--kv-option", "page=4611686018427387904"] + m + ["hi"],
                 status: 64, says: "page"),
            Case(name: "unknown kv type", arguments: ["generate", "--kv-type", "q5_0", "hi"], status: 64, says: "--kv-type"),
            Case(name: "quantized kv type on head dim 16", arguments: ["generate", "--kv-type", "q8_0"] + m + ["hi"], status: 64,
                 says: "multiple of 32"),
            Case(name: "chat unknown kv type", arguments: ["chat", "--kv-type", "f32"], status: 64, says: "--kv-type"),
            Case(name: "serve unknown kv type", arguments: ["serve", "--kv-type", "Q8_0"], status: 64, says: "--kv-type"),
            Case(name: "bench unknown kv type", arguments: ["bench", "--kv-type", "f16,bogus"], status: 64, says: "bogus"),
            Case(name: "bench empty kv type", arguments: ["bench", "--kv-type", "f16,"], status: 64, says: "--kv-type"),
            Case(name: "bench context not a number", arguments: ["bench", "--context", "64,abc"], status: 64, says: "abc"),
            Case(name: "bench context near Int.max", arguments: ["bench", "--context", "9223372036854775807"] + m, status: 64, says: "--context"),
            Case(name: "bench negative gen", arguments: ["bench", "--gen", "-5"], status: 64, says: "--gen"),
            Case(name: "bench zero repetitions", arguments: ["bench", "--repetitions", "0"], status: 64, says: "--repetitions"),
            Case(name: "bench-child negative context", arguments: ["bench-child", "--context", "-1"] + m, status: 64, says: "--context"),
            Case(name: "bench-child huge gen", arguments: ["bench-child", "--context", "64", "--gen", "9223372036854775807"] + m,
                 status: 64, says: "--gen"),
            Case(name: "tokenize without input", arguments: ["tokenize"], status: 64, says: "--text"),
            Case(name: "unknown catalog name", arguments: ["generate", "--model", "no-such-model", "hi"], status: 64, says: "no-such-model"),
        ])
    }

    /// Every option of every method at extreme values, on a short prompt: each is either accepted or refused as a
    /// usage error, never a crash, and never costs much memory (a 10⁹-token stage-1 window on a 20-token prompt
    /// used to allocate its whole ring).
    func testExtremeMethodOptions() throws {
        let model = try tinyModel()
        for method in KVMethods.all {
            for option in method.options {
                for value in ["0", "1", "1000000000", "nan"] {
                    let arguments = ["generate", "--raw", "--model", model, "--max-tokens", "3", "--kv", method.name, "--budget", "32",
                                     "--kv-option", "\(option.key)=\(value)", "Twenty tokens or so of a prompt, to be compressed by the method."]
                    let run = try execute(arguments, measuringPeakMemory: true)
                    let what = "\(method.name) \(option.key)=\(value)"
                    XCTAssertFalse(run.crashed, "\(what): killed by signal \(run.status)")
                    XCTAssertTrue([0, 64].contains(run.status), "\(what): status \(run.status): \(run.stderr.prefix(400))")
                    if run.status == 64 { XCTAssertTrue(run.stderr.contains(option.key), "\(what): \(run.stderr.prefix(400))") }
                    let peak = run.stderr.split(separator: "\n").last.flatMap { Int($0.replacingOccurrences(of: "peak-rss-kib ", with: "")) }
                    XCTAssertLessThan(peak ?? .max, 1 << 20, "\(what): peak resident memory in KiB")
                }
            }
        }
    }

    /// `eval` validates every option before it fetches data or writes `--out`; sizes near `Int.max` are refused,
    /// not overflowed in the planners.
    func testEvalOptions() throws {
        let model = try tinyModel()
        let out = scratch.appendingPathComponent("eval-out")
        let sweep = ["eval", "passkey", "--model", model, "--synthetic", "--samples", "1", "--methods", "rocket", "--budgets", "64",
                     "--out", out.path]
        let huge = "9223372036854775807"
        try check([
            Case(name: "unknown task", arguments: ["eval", "nosuch"], status: 64, says: "nosuch"),
            Case(name: "length near Int.max", arguments: sweep + ["--lengths", huge], status: 64, says: "length"),
            Case(name: "max tokens near Int.max", arguments: sweep + ["--lengths", "128", "--max-tokens", huge], status: 64, says: "max tokens"),
            Case(name: "plan-new-tokens near Int.max", arguments: sweep + ["--lengths", "128", "--plan-new-tokens", huge], status: 64,
                 says: "plan-new-tokens"),
            Case(name: "negative samples", arguments: ["eval", "passkey", "--samples", "-3"], status: 64, says: "samples"),
            Case(name: "unknown kv type", arguments: sweep + ["--lengths", "128", "--kv-type", "q9"], status: 64, says: "--kv-type"),
            Case(name: "bad option value", arguments: sweep + ["--lengths", "128", "--kv-option", "votes=bogus"], status: 64, says: "votes=bogus"),
            Case(name: "bad variant option value", arguments: sweep + ["--lengths", "128", "--methods", "full,rocket+split=bogus"], status: 64,
                 says: "split=bogus"),
        ])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "a refused sweep wrote its output folder")
        // --prompts-out runs no model and leaves --out alone; multiturn cannot be exported, nor to a name that is no file.
        let prompts = scratch.appendingPathComponent("prompts.jsonl")
        try check([
            Case(name: "multiturn prompts", arguments: ["eval", "multiturn", "--prompts-out", prompts.path], status: 64, says: "multiturn"),
            Case(name: "prompts to no file name", arguments: sweep + ["--prompts-out", ""], status: 64, says: "--prompts-out"),
            Case(name: "prompts to a folder name", arguments: sweep + ["--prompts-out", "/tmp/"], status: 64, says: "file name"),
            Case(name: "prompts under a file", arguments: sweep + ["--lengths", "128", "--prompts-out", "/dev/null/prompts.jsonl"], status: 73,
                 says: "/dev/null"),
            Case(name: "prompts exported", arguments: sweep + ["--lengths", "128", "--depths", "0,1", "--prompts-out", prompts.path], status: 0,
                 says: "wrote 2 prompts"),
        ])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "exporting prompts wrote the output folder")
        let lines = try String(contentsOf: prompts, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 2)
        XCTAssertEqual(try JSONDecoder().decode(EvalPromptRecord.self, from: Data(lines[1].utf8)).depth, 1)
        try check([Case(name: "output under a file", arguments: Array(sweep.dropLast()) + ["/dev/null/eval", "--lengths", "128"],
                        status: 73, says: "/dev/null/eval")])
    }

    func testMissingAndUnwritableFiles() throws {
        try check([
            Case(name: "missing prompt file", arguments: ["generate", "--prompt-file", "/nonexistent/prompt.txt"], status: 66, says: "/nonexistent/prompt.txt"),
            Case(name: "prompt file is a directory", arguments: ["generate", "--prompt-file", scratch.path], status: 66, says: scratch.path),
            Case(name: "missing model file", arguments: ["generate", "--model", "/nonexistent/model.gguf", "hi"], status: 66, says: "/nonexistent/model.gguf"),
            Case(name: "model is a directory", arguments: ["inspect", "--model", scratch.path], status: 66, says: scratch.path),
        ])
        try check([Case(name: "unknown SIMD cap", arguments: ["methods"], status: 64, says: "ROCKETKV_SIMD")],
                  environment: ["ROCKETKV_SIMD": "sse9"])
        // A cache folder that cannot be created: the error names it, no NSError dump.
        try check([Case(name: "cache under a file", arguments: ["generate", "hi"], status: 73, says: "/dev/null/rocketkv")],
                  environment: ["ROCKETKV_HOME": "/dev/null/rocketkv"])
    }

    // MARK: - Prompts

    func testBadPrompts() throws {
        let model = try tinyModel()
        let notUTF8 = scratch.appendingPathComponent("latin1.txt")
        try Data([0x63, 0x61, 0x66, 0xE9, 0x0A]).write(to: notUTF8)
        let short = try tinyModel(named: "context16") { $0.set("llama.context_length", .uint32(16)) }
        let long = String(repeating: "many words ", count: 40)
        try check([
            Case(name: "prompt file not UTF-8", arguments: ["generate", "--model", model, "--prompt-file", notUTF8.path], status: 65, says: "UTF-8"),
            Case(name: "prompt longer than the context", arguments: ["generate", "--raw", "--model", short, long], status: 65, says: "context"),
            Case(name: "empty raw prompt", arguments: ["generate", "--raw", "--model", model, ""], status: 65, says: "empty"),
        ])
    }

    /// Generation asked for more tokens than fit is clamped to the context with a note, not an overflow.
    func testMaxTokensIsClampedToTheContext() throws {
        let short = try tinyModel(named: "context48") { $0.set("llama.context_length", .uint32(48)) }
        let run = try execute(["generate", "--raw", "--model", short, "--max-tokens", "9223372036854775807", "hello"])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stderr.contains("clamped"), run.stderr)
    }

    /// One failed turn does not end a chat: the user can go on (here: `/reset`, then a turn that fits).
    func testChatSurvivesAFailedTurn() throws {
        let short = try tinyModel(named: "context64") { $0.set("llama.context_length", .uint32(64)) }
        let long = String(repeating: "many words ", count: 60)
        let run = try execute(["chat", "--model", short, "--max-tokens", "2"], stdin: "\(long)\n/reset\nhi\n/exit\n")
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stderr.contains("context"), run.stderr)
        XCTAssertTrue(run.stderr.contains("(new conversation)"), run.stderr)
    }

    // MARK: - Model files

    func testCorruptModelFiles() throws {
        let text = scratch.appendingPathComponent("not-a-model.gguf")
        try Data("hello, I am not a model\n".utf8).write(to: text)
        let empty = scratch.appendingPathComponent("empty.gguf")
        try Data().write(to: empty)
        let truncated = scratch.appendingPathComponent("truncated.gguf")
        try Data(try Data(contentsOf: URL(fileURLWithPath: try tinyModel())).prefix(100_000)).write(to: truncated)
        try check([
            Case(name: "not a GGUF", arguments: ["inspect", "--model", text.path], status: 65, says: "GGUF"),
            Case(name: "empty file", arguments: ["inspect", "--model", empty.path], status: 65, says: "GGUF"),
            Case(name: "truncated", arguments: ["generate", "--model", truncated.path, "hi"], status: 65, says: "truncated.gguf"),
        ])
    }

    func testInconsistentHyperParameters() throws {
        func variant(_ name: String, _ key: String, _ value: GGUFValue?) throws -> [String] {
            ["generate", "--raw", "--max-tokens", "1", "--model", try tinyModel(named: name) { $0.set(key, value) }, "hi"]
        }
        let huge = GGUFValue.uint64(UInt64(1) << 62)
        try check([
            Case(name: "unsupported architecture", arguments: try variant("arch", "general.architecture", .string("gpt9")), status: 65, says: "gpt9"),
            Case(name: "zero heads", arguments: try variant("heads0", "llama.attention.head_count", .uint32(0)), status: 65, says: "head"),
            Case(name: "heads × head dim overflows", arguments: try variant("headsHuge", "llama.attention.head_count", huge), status: 65, says: "head"),
            Case(name: "head dim overflows", arguments: try variant("keyHuge", "llama.attention.key_length", huge), status: 65, says: "key_length"),
            Case(name: "context × KV bytes overflows", arguments: try variant("ctxHuge", "llama.context_length", huge), status: 65, says: "context"),
            Case(name: "embedding overflows", arguments: try variant("embHuge", "llama.embedding_length", huge), status: 65, says: "embedding"),
            Case(name: "one block fewer than the file has", arguments: try variant("blocks2", "llama.block_count", .uint32(2)), status: 65, says: "does not use"),
            Case(name: "one block more than the file has", arguments: try variant("blocks4", "llama.block_count", .uint32(4)), status: 65, says: "blk.3"),
            Case(name: "infinite RoPE base", arguments: try variant("ropeInf", "llama.rope.freq_base", .float32(.infinity)), status: 65, says: "RoPE base"),
            Case(name: "negative RoPE base", arguments: try variant("ropeNeg", "llama.rope.freq_base", .float32(-1)), status: 65, says: "RoPE base"),
            Case(name: "zero RMS epsilon", arguments: try variant("eps0", "llama.attention.layer_norm_rms_epsilon", .float32(0)), status: 65, says: "epsilon"),
            Case(name: "NaN RMS epsilon", arguments: try variant("epsNaN", "llama.attention.layer_norm_rms_epsilon", .float32(.nan)), status: 65, says: "epsilon"),
            Case(name: "zero RoPE dims", arguments: try variant("ropeDims0", "llama.rope.dimension_count", .uint32(0)), status: 65, says: "rope.dimension_count"),
            Case(name: "odd RoPE dims", arguments: try variant("ropeDims3", "llama.rope.dimension_count", .uint32(3)), status: 65, says: "RoPE dim"),
            Case(name: "negative RoPE scaling", arguments: ["generate", "--raw", "--model", try tinyModel(named: "scaleNeg") {
                $0.set("llama.rope.scaling.type", .string("linear")); $0.set("llama.rope.scaling.factor", .float32(-2)) }, "hi"],
                 status: 65, says: "RoPE scaling"),
            Case(name: "model vocabulary smaller than the embedding", arguments: try variant("vocabSmall", "llama.vocab_size", .uint32(1000)),
                 status: 65, says: "token_embd"),
            Case(name: "metadata of the wrong type", arguments: try variant("ctxString", "llama.context_length", .string("long")), status: 65,
                 says: "llama.context_length"),
            Case(name: "unknown tokenizer", arguments: try variant("tokBogus", "tokenizer.ggml.model", .string("bogus")), status: 65, says: "bogus"),
        ])
    }

    /// A tokenizer that can produce ids the model has no embedding row for is refused when loading.
    func testTokenizerLargerThanTheModel() throws {
        let path = try tinyModel(named: "extraToken") { w in
            guard let i = w.metadata.firstIndex(where: { $0.0 == "tokenizer.ggml.tokens" }), case .array(let tokens) = w.metadata[i].1 else { return }
            w.metadata[i].1 = .array(tokens + [.string("<|zzz|>")])
            if let t = w.metadata.firstIndex(where: { $0.0 == "tokenizer.ggml.token_type" }), case .array(let types) = w.metadata[t].1 {
                w.metadata[t].1 = .array(types + [.int32(3)])
            }
        }
        try check([Case(name: "tokenizer has more tokens than the model", arguments: ["generate", "--raw", "--model", path, "<|zzz|>"],
                        status: 65, says: "vocabulary")])
    }

    func testHostileChatTemplates() throws {
        func template(_ name: String, _ source: String) throws -> [String] {
            ["generate", "--max-tokens", "1", "--model", try tinyModel(named: name) { $0.set("tokenizer.chat_template", .string(source)) }, "hi"]
        }
        try check([
            Case(name: "huge range", arguments: try template("range", "{% for i in range(1000000000000) %}x{% endfor %}"), status: 65, says: "template"),
            Case(name: "output doubling", arguments: try template("doubling",
                 "{% set s = namespace(t='x') %}{% for i in range(64) %}{% set s.t = s.t ~ s.t %}{% endfor %}{{ s.t }}"), status: 65, says: "template"),
            Case(name: "huge power", arguments: try template("power", "{{ 10 ** 100000 }}"), status: 65, says: "template"),
            Case(name: "deep nesting", arguments: try template("nesting", "{{ " + String(repeating: "(", count: 5000) + "1" + String(repeating: ")", count: 5000) + " }}"),
                 status: 65, says: "template"),
            Case(name: "syntax error", arguments: try template("syntax", "{% for %}"), status: 65, says: "template"),
            Case(name: "Int.min negation", arguments: try template("intmin", "{{ -(-9223372036854775807 - 1) }}"), status: 65, says: "template"),
        ])
    }

    // MARK: - Helpers

    /// The tiny Llama 3 model file, or a copy of it changed by `edit` (written once per name into the scratch folder).
    func tinyModel(named name: String? = nil, edit: ((inout TestGGUFWriter) -> Void)? = nil) throws -> String {
        let base = ModelStore.home.appendingPathComponent("tiny/llama3.gguf")
        guard FileManager.default.fileExists(atPath: base.path) else {
            XCTFail("\(base.path) is missing: run `python3 scripts/make_tiny_models.py --write-models` (.ci/run does it)")
            throw XCTSkip("no tiny model")
        }
        guard let name, let edit else { return base.path }
        var writer = TestGGUFWriter(copying: try GGUFFile(path: base.path))
        edit(&writer)
        let url = scratch.appendingPathComponent("\(name).gguf")
        try Data(writer.build()).write(to: url)
        return url.path
    }

    struct Run { let status: Int32; let crashed: Bool; let stdout: String; let stderr: String }

    /// Runs the binary with a time limit (a hang fails the test) and standard input `stdin`. `measuringPeakMemory`
    /// runs it under a python3 parent that appends `peak-rss-kib N` (the child's own peak) to stderr.
    func execute(_ arguments: [String], stdin: String = "", environment: [String: String] = [:], measuringPeakMemory: Bool = false) throws -> Run {
        let process = Process()
        if measuringPeakMemory {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            let script = "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
                + "print('peak-rss-kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r.returncode if r.returncode >= 0 else 128 - r.returncode)"
            process.arguments = ["python3", "-c", script, Self.binary.path] + arguments
        } else {
            process.executableURL = Self.binary
            process.arguments = arguments
        }
        var env = ProcessInfo.processInfo.environment
        env["ROCKETKV_THREADS"] = nil
        for (k, v) in environment { env[k] = v }
        process.environment = env
        let input = Pipe(), output = Pipe(), errors = Pipe()
        (process.standardInput, process.standardOutput, process.standardError) = (input, output, errors)
        try process.run()
        input.fileHandleForWriting.write(Data(stdin.utf8))
        try input.fileHandleForWriting.close()
        // Read both pipes while the process runs so that neither fills up.
        nonisolated(unsafe) var out = Data(), err = Data()
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) { out = output.fileHandleForReading.readDataToEndOfFile() }
        DispatchQueue.global().async(group: group) { err = errors.fileHandleForReading.readDataToEndOfFile() }
        if group.wait(timeout: .now() + 120) == .timedOut {
            process.terminate()
            XCTFail("rocketkv \(arguments.joined(separator: " ")) did not finish in 120 s")
        }
        process.waitUntilExit()
        return Run(status: process.terminationStatus, crashed: process.terminationReason == .uncaughtSignal, stdout: String(decoding: out, as: UTF8.self), stderr: String(decoding: err, as: UTF8.self))
    }

    func check(_ cases: [Case], environment: [String: String] = [:], file: StaticString = #filePath, line: UInt = #line) throws {
        for c in cases {
            let run = try execute(c.arguments, stdin: c.stdin, environment: environment)
            let first = run.stderr.split(separator: "\n", omittingEmptySubsequences: true).first.map(String.init) ?? ""
            XCTAssertEqual(run.status, c.status, "\(c.name): exit status; stderr: \(run.stderr.prefix(600))", file: file, line: line)
            XCTAssertTrue(first.contains(c.says), "\(c.name): first line of stderr should name '\(c.says)', got: \(first)", file: file, line: line)
            XCTAssertFalse(run.crashed, "\(c.name): killed by signal \(run.status)", file: file, line: line)
        }
    }
}
