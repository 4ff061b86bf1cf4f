import Foundation
import RocketKV
import XCTest

/// The batch scheduler on the real model: concurrent greedy replies equal the ones generated alone, a request
/// that extends a finished conversation continues its KV state, cancellation frees the slot, the queue is bounded.
final class SchedulerModelTests: XCTestCase {
    static let engine = try! Engine(file: TestModel.file, threads: 2)
    static let tokenizer = try! Tokenizer(gguf: TestModel.file)
    let chat = try! ChatPrompt(file: TestModel.file, tokenizer: tokenizer)

    func prompt(_ messages: [ChatMessage]) throws -> [Int] {
        Self.tokenizer.encode(try chat.render(messages), addSpecial: false, parseSpecial: true)
    }

    func options(maxTokens: Int) -> GenerationOptions {
        var o = GenerationOptions()
        o.maxTokens = maxTokens
        return o
    }

    /// Collects a stream: the text, the started event and the report.
    func collect(_ stream: AsyncThrowingStream<GenerationEvent, Error>) async throws -> (text: String, cached: Int, report: GenerationReport) {
        var text = "", cached = -1
        for try await event in stream {
            switch event {
            case .started(_, let cachedTokens): cached = cachedTokens
            case .text(let piece): text += piece
            case .finished(let report): return (text, cached, report)
            }
        }
        throw SchedulerError.stopped
    }

    func testConcurrentRepliesEqualRepliesAlone() async throws {
        let questions = ["What is a rocket?", "Name three colours.", "Write a haiku about the sea.", "Count from one to ten."]
        let kvs = [KVConfiguration(), KVConfiguration(method: "rocket", budget: 64), KVConfiguration(), KVConfiguration(method: "rocket-mt", budget: 64)]
        let prompts = try questions.map { try prompt([ChatMessage(role: "user", content: $0)]) }
        let alone = try zip(prompts, kvs).map { prompt, kv in
            let session = Self.engine.session(policy: try kv.makePolicy(model: Self.engine.model, promptLength: prompt.count, maxNewTokens: 24))
            return try Generator(session: session, tokenizer: Self.tokenizer).generate(prompt: prompt, options: options(maxTokens: 24)).text
        }
        let scheduler = BatchScheduler(engine: Self.engine, tokenizer: Self.tokenizer, parallel: 4, prefillChunk: 32)
        defer { scheduler.shutdown() }
        let streams = try zip(prompts, kvs).map { try scheduler.generate(prompt: $0, options: options(maxTokens: 24), kv: $1) }
        var texts: [String] = []
        for stream in streams { texts.append(try await collect(stream).text) }
        XCTAssertEqual(texts, alone)
        XCTAssertEqual(scheduler.status.active, 0)
    }

    func testLaterTurnContinuesTheCachedConversation() async throws {
        let scheduler = BatchScheduler(engine: Self.engine, tokenizer: Self.tokenizer, parallel: 2)
        defer { scheduler.shutdown() }
        for kv in [KVConfiguration(), KVConfiguration(method: "rocket-mt", budget: 64)] {
            var messages = [ChatMessage(role: "user", content: "My name is Ada. What is a rocket?")]
            let first = try prompt(messages)
            let one = try await collect(try scheduler.generate(prompt: first, options: options(maxTokens: 16), kv: kv))
            XCTAssertEqual(one.cached, 0)
            messages += [ChatMessage(role: "assistant", content: one.text), ChatMessage(role: "user", content: "What is my name?")]
            let second = try prompt(messages)
            let two = try await collect(try scheduler.generate(prompt: second, options: options(maxTokens: 16), kv: kv))
            // The first turn's prompt and reply (all but the last sampled token, which was never fed) are reused.
            XCTAssertEqual(two.cached, first.count + one.report.result.tokens.count - 1, "\(kv)")
            XCTAssertEqual(two.report.result.promptTokens, second.count - two.cached)
            // The same request with another KV configuration shares nothing.
            let other = try await collect(try scheduler.generate(prompt: second, options: options(maxTokens: 4), kv: KVConfiguration(method: "quest", budget: 64)))
            XCTAssertEqual(other.cached, 0)
        }
    }

    /// `rocket` is continued only while stage 1 has evicted nothing (see `ConversationCache`).
    func testRocketIsContinuedOnlyWhileNothingWasEvicted() async throws {
        let scheduler = BatchScheduler(engine: Self.engine, tokenizer: Self.tokenizer, parallel: 1)
        defer { scheduler.shutdown() }
        let long = String(repeating: "The quick brown fox jumps over the lazy dog. ", count: 40)
        for (budget, content, continued) in [(1024, "What is a rocket?", true), (64, long + "What is a rocket?", false)] {
            let kv = KVConfiguration(method: "rocket", budget: budget)
            var messages = [ChatMessage(role: "user", content: content)]
            let one = try await collect(try scheduler.generate(prompt: try prompt(messages), options: options(maxTokens: 8), kv: kv))
            messages += [ChatMessage(role: "assistant", content: one.text), ChatMessage(role: "user", content: "Why?")]
            let two = try await collect(try scheduler.generate(prompt: try prompt(messages), options: options(maxTokens: 8), kv: kv))
            XCTAssertEqual(two.cached > 0, continued, "budget \(budget)")
        }
    }

    func testCancellingFreesTheSlotAndTheQueueIsBounded() async throws {
        let scheduler = BatchScheduler(engine: Self.engine, tokenizer: Self.tokenizer, parallel: 1, queueLimit: 1)
        defer { scheduler.shutdown() }
        let p = try prompt([ChatMessage(role: "user", content: "Tell me a long story.")])
        let running = try scheduler.generate(prompt: p, options: options(maxTokens: 10_000))
        let queued = try scheduler.generate(prompt: p, options: options(maxTokens: 4))
        XCTAssertThrowsError(try scheduler.generate(prompt: p, options: options(maxTokens: 4))) { XCTAssertEqual($0 as? SchedulerError, .queueFull) }
        let consumer = Task {
            var finished = false
            for try await event in running { if case .finished = event { finished = true } }
            return finished
        }
        try await Task.sleep(nanoseconds: 300_000_000)
        consumer.cancel()
        // A cancelled consumer's loop just ends (the stream returns nil), without the reply's end.
        let finished = try await consumer.value
        XCTAssertFalse(finished)
        // The queued request gets the slot and completes.
        let done = try await collect(queued)
        XCTAssertEqual(done.report.result.tokens.count, 4)
        XCTAssertEqual(scheduler.status.active, 0)
        XCTAssertEqual(scheduler.status.queued, 0)
    }

    func testRequestsThatCannotRunAreRefused() throws {
        let scheduler = BatchScheduler(engine: Self.engine, tokenizer: Self.tokenizer)
        defer { scheduler.shutdown() }
        let context = Self.engine.model.config.contextLength
        XCTAssertThrowsError(try scheduler.generate(prompt: [], options: options(maxTokens: 1)))
        XCTAssertThrowsError(try scheduler.generate(prompt: Array(repeating: 1, count: context), options: options(maxTokens: 1))) {
            XCTAssertEqual($0 as? SchedulerError, .promptTooLong(tokens: context, context: context))
        }
        XCTAssertThrowsError(try scheduler.generate(prompt: [-1], options: options(maxTokens: 1)))
        XCTAssertThrowsError(try scheduler.generate(prompt: [1], options: options(maxTokens: 1), kv: KVConfiguration(method: "nope")))
        XCTAssertThrowsError(try scheduler.generate(prompt: [1], options: options(maxTokens: 1), kv: KVConfiguration(method: "rocket")))
        XCTAssertThrowsError(try scheduler.generate(prompt: [1], options: options(maxTokens: 1), kv: KVConfiguration(method: "full", options: ["x": "1"])))
    }
}
