@testable import RocketKVServer
import Foundation
import RocketKV
import XCTest

/// Request parsing and validation: what a client sends becomes options or a 400 naming the field, never a crash.
final class RequestTests: XCTestCase {
    func parse(_ json: String) throws -> CompletionRequest { try CompletionRequest.parse(Data(json.utf8)) }

    func assertError(_ json: String, param: String?, file: StaticString = #filePath, line: UInt = #line,
                     _ use: (CompletionRequest) throws -> Void = { _ in }) {
        XCTAssertThrowsError(try use(try parse(json)), file: file, line: line) { error in
            guard let error = error as? APIError else { return XCTFail("\(error)", file: file, line: line) }
            XCTAssertEqual(error.status, .badRequest, file: file, line: line)
            XCTAssertEqual(error.param, param, file: file, line: line)
        }
    }

    func testFieldsBecomeOptions() throws {
        let r = try parse(#"{"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],"#
                          + #""max_tokens": 50, "temperature": 0.5, "top_p": 0.9, "seed": -1, "stop": "END", "stream": true,"#
                          + #""stream_options": {"include_usage": true}, "unknown": {"x": [1]}}"#)
        XCTAssertEqual(r.messages?.first?.content, "ab")
        let o = try r.generationOptions(room: 30)
        XCTAssertEqual(o.maxTokens, 30)   // clamped to the room in the context
        XCTAssertEqual(o.sampling.temperature, 0.5)
        XCTAssertEqual(o.sampling.topP, 0.9)
        XCTAssertEqual(o.sampling.seed, UInt64.max)
        XCTAssertEqual(o.stopStrings, ["END"])
        XCTAssertEqual(r.streamOptions?.includeUsage, true)
        XCTAssertEqual(try parse(#"{"prompt": ["x"]}"#).prompt?.text, "x")
        XCTAssertEqual(try parse(#"{"prompt": "x"}"#).generationOptions(room: 99).maxTokens, 99)
    }

    func testErrorsNameTheField() {
        assertError(#"{"messages": ["#, param: nil)
        assertError(#"[1]"#, param: nil)
        assertError(#"{"max_tokens": "ten"}"#, param: "max_tokens")
        assertError(#"{"messages": [{"role": 3}]}"#, param: "messages[0].role")
        assertError(#"{"messages": [{"content": "x"}]}"#, param: "messages[0].role")
        assertError(#"{"stream_options": {"include_usage": "yes"}}"#, param: "stream_options.include_usage")
        assertError(#"{"prompt": ["a", "b"]}"#, param: "prompt")
        assertError(#"{"temperature": 3}"#, param: "temperature") { _ = try $0.generationOptions(room: 10) }
        assertError(#"{"max_tokens": -1}"#, param: "max_tokens") { _ = try $0.generationOptions(room: 10) }
        assertError(#"{"n": 2}"#, param: "n") { _ = try $0.generationOptions(room: 10) }
        assertError(#"{"stop": ["a", "b", "c", "d", "e"]}"#, param: "stop") { _ = try $0.generationOptions(room: 10) }
    }

    func testKVExtensionOverridesTheDefault() throws {
        let base = KVConfiguration(method: "rocket", budget: 256, options: ["split": "efficiency"])
        XCTAssertEqual(try parse("{}").kvConfiguration(default: base), base)
        XCTAssertEqual(try parse(#"{"kv": {"budget": 128}}"#).kvConfiguration(default: base),
                       KVConfiguration(method: "rocket", budget: 128, options: ["split": "efficiency"]))
        // Another method starts from nothing: the default's options belong to the default's method.
        XCTAssertEqual(try parse(#"{"kv": {"method": "full"}}"#).kvConfiguration(default: base), KVConfiguration(method: "full"))
        XCTAssertEqual(try parse(#"{"kv": {"method": "quest", "budget": 64, "options": {"page": 16}}}"#).kvConfiguration(default: base),
                       KVConfiguration(method: "quest", budget: 64, options: ["page": "16"]))
    }

    /// The route's whole check on the default model: the chat template's prompt, `max_tokens` clamped to what the
    /// context leaves, and each refusal with its status and field.
    func testPreparedRequestChecksAgainstTheServedModel() throws {
        let file = try GGUFFile(path: try ModelStore.defaultModelPath())
        let tokenizer = try Tokenizer(gguf: file)
        let chat = try ChatPrompt(file: file, tokenizer: tokenizer)
        let target = RequestTarget(modelID: "m", tokenizer: tokenizer, chat: chat, contextLength: 64, defaultKV: KVConfiguration(method: "rocket", budget: 32))
        func prepare(_ json: String, chat: Bool = true, target: RequestTarget = target) throws -> PreparedRequest {
            try PreparedRequest(body: Data(json.utf8), chat: chat, for: target)
        }
        let r = try prepare(#"{"model": "m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1000000, "stream": true}"#)
        XCTAssertEqual(r.prompt, tokenizer.encode(try chat.render([ChatMessage(role: "user", content: "Hi")]), addSpecial: false, parseSpecial: true))
        XCTAssertEqual(r.options.maxTokens, 64 - r.prompt.count)
        XCTAssertEqual(r.kv, target.defaultKV)
        XCTAssertTrue(r.stream)
        XCTAssertFalse(r.includeUsage)
        XCTAssertEqual(try prepare(#"{"prompt": "Hi"}"#, chat: false).prompt, tokenizer.encode("Hi", addSpecial: true, parseSpecial: true))

        func assertRefused(_ json: String, chat: Bool = true, target: RequestTarget = target, status: Int = 400,
                           param: String?, line: UInt = #line) {
            XCTAssertThrowsError(try prepare(json, chat: chat, target: target), line: line) { error in
                guard let error = error as? APIError else { return XCTFail("\(error)", line: line) }
                XCTAssertEqual(error.status.code, status, line: line)
                XCTAssertEqual(error.param, param, line: line)
            }
        }
        assertRefused(#"{"model": "other", "prompt": "Hi"}"#, chat: false, status: 404, param: "model")
        assertRefused(#"{"messages": []}"#, param: "messages")
        assertRefused(#"{"prompt": ""}"#, chat: false, param: "prompt")
        assertRefused(#"{"prompt": "\#(String(repeating: "word ", count: 100))"}"#, chat: false, param: "prompt")
        let noTemplate = RequestTarget(modelID: "m", tokenizer: tokenizer, chat: nil, contextLength: 64, defaultKV: KVConfiguration())
        assertRefused(#"{"messages": [{"role": "user", "content": "Hi"}]}"#, target: noTemplate, param: "messages")
    }

    func testSchedulerErrorsMapToStatuses() {
        XCTAssertEqual(OpenAIServer.apiError(SchedulerError.queueFull).status, .tooManyRequests)
        XCTAssertEqual(OpenAIServer.apiError(SchedulerError.promptTooLong(tokens: 9, context: 8)).status, .badRequest)
        XCTAssertEqual(OpenAIServer.apiError(KVMethodError("x")).status, .badRequest)
        XCTAssertEqual(OpenAIServer.apiError(CocoaError(.fileNoSuchFile)).status, .internalServerError)
    }
}
