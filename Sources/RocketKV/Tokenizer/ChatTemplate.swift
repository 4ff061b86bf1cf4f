import Foundation
import Jinja

/// One turn of a chat: `role` is usually "system", "user" or "assistant".
public struct ChatMessage: Sendable, Equatable {
    public var role: String
    public var content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// Why a chat template could not be parsed or rendered.
public struct ChatTemplateError: Error, Sendable, Equatable, CustomStringConvertible, LocalizedError {
    public enum Kind: Sendable, Equatable {
        /// The template is not valid Jinja (unterminated tag, unknown filter, bad expression...).
        case syntax
        /// Valid Jinja that this interpreter does not implement (`extends`, `recursive` loops...).
        case unsupported
        /// An error while rendering (undefined variable used where Jinja fails, bad operand types...),
        /// or a template going past the interpreter's limits (`Jinja.Limits`).
        case render
        /// The template itself called `raise_exception(message)`; `message` is the template's text.
        case raised
    }

    public var kind: Kind
    public var message: String
    /// 1-based line in the template source, when known.
    public var line: Int?

    public init(_ kind: Kind, _ message: String, line: Int? = nil) {
        self.kind = kind
        self.message = message
        self.line = line
    }

    public var description: String {
        let at = line.map { " (line \($0))" } ?? ""
        switch kind {
        case .syntax: return "chat template syntax error\(at): \(message)"
        case .unsupported: return "chat template uses unsupported Jinja\(at): \(message)"
        case .render: return "chat template render error\(at): \(message)"
        case .raised: return "chat template raised an exception: \(message)"
        }
    }

    public var errorDescription: String? { description }
}

/// A model's chat template (`tokenizer.chat_template` in GGUF metadata, a Jinja2 template),
/// rendered the way Hugging Face transformers renders it (see `Jinja.Template`).
///
/// The template is parsed once by `init(source:)`; `render` can be called many times.
public struct ChatTemplate: Sendable {
    /// The template text as given.
    public let source: String
    private let template: Template

    /// Parses `source`. Throws `ChatTemplateError` (`.syntax` or `.unsupported`) with the line.
    public init(source: String) throws {
        self.source = source
        do {
            template = try Template(source)
        } catch let error as TemplateError {
            throw ChatTemplateError(error)
        }
    }

    /// Renders `messages` into the prompt text.
    ///
    /// The template sees the same variables as under transformers' `apply_chat_template`:
    /// `messages` (a list of `{"role": ..., "content": ...}` dicts), `add_generation_prompt`,
    /// `bos_token`, `eos_token`, and `tools` / `documents` set to none. `now` is the time
    /// `strftime_now(...)` formats (local time zone), for templates that print today's date.
    public func render(messages: [ChatMessage], addGenerationPrompt: Bool, bosToken: String, eosToken: String,
                       now: Date = Date()) throws -> String {
        let context: [String: Value] = [
            "messages": .array(messages.map { ["role": .string($0.role), "content": .string($0.content)] }),
            "add_generation_prompt": .bool(addGenerationPrompt),
            "bos_token": .string(bosToken),
            "eos_token": .string(eosToken),
            "tools": .null,
            "documents": .null,
        ]
        do {
            return try template.render(context, now: now)
        } catch let error as TemplateError {
            throw ChatTemplateError(error)
        }
    }
}

extension ChatTemplateError {
    init(_ error: TemplateError) {
        let kind: Kind
        switch error.kind {
        case .syntax: kind = .syntax
        case .unsupported: kind = .unsupported
        case .render, .limit: kind = .render
        case .raised: kind = .raised
        }
        self.init(kind, error.message, line: error.line)
    }
}
