import Foundation
import Jinja
import XCTest

/// Checks that a template fails with an error of `kind` whose message contains `text`.
func assertError(_ kind: TemplateError.Kind, containing text: String, file: StaticString = #filePath,
                 line: UInt = #line, _ body: () throws -> Void) {
    do {
        try body()
        XCTFail("expected a \(kind) error containing \"\(text)\"", file: file, line: line)
    } catch let error as TemplateError {
        XCTAssertEqual(error.kind, kind, "\(error)", file: file, line: line)
        XCTAssertTrue(error.message.contains(text), "\"\(error.message)\" does not contain \"\(text)\"",
                      file: file, line: line)
    } catch {
        XCTFail("unexpected error \(error)", file: file, line: line)
    }
}

/// Renders `source` with a one-message chat as its context.
func render(_ source: String, _ context: [String: Value] = ["messages": [["role": "user", "content": "Hi"]]]) throws -> String {
    try Template(source).render(context)
}

/// The public API, and the interpreter's parse and render errors.
final class TemplateTests: XCTestCase {
    func testRendersContextValuesInOrder() throws {
        let context: [String: Value] = [
            "d": ["b": 1, "a": [true, nil, 1.5, "s"]],
            "n": .int(3),
        ]
        XCTAssertEqual(try render("{{ d }} {{ d|tojson }} {{ n * 2 }}", context),
                       "{'b': 1, 'a': [True, None, 1.5, 's']} {\"b\": 1, \"a\": [true, null, 1.5, \"s\"]} 6")
        let template = try Template("{% for k in d %}{{ k }}{% endfor %}")
        XCTAssertEqual(try template.render(context), "ba")
        XCTAssertEqual(try template.render(["d": ["z": 0, "y": 0]]), "zy")
    }

    func testStrftimeNowFormatsTheGivenTime() throws {
        let now = Calendar.current.date(from: DateComponents(year: 2024, month: 9, day: 5, hour: 12))!
        XCTAssertEqual(try Template("{{ strftime_now('%Y-%m-%d %H:%M') }}").render([:], now: now), "2024-09-05 12:00")
    }

    func testErrorDescriptionHasKindAndLine() {
        do {
            _ = try Template("a\nb\n{{ x | nosuchfilter }}")
            XCTFail("expected an error")
        } catch let error as TemplateError {
            XCTAssertEqual(error, TemplateError(.syntax, "unknown filter 'nosuchfilter'", line: 3))
            XCTAssertEqual(error.description, "template syntax error (line 3): unknown filter 'nosuchfilter'")
        } catch {
            XCTFail("\(error)")
        }
    }

    func testRaiseExceptionMessageIsSurfaced() {
        assertError(.raised, containing: "System role not supported") {
            _ = try render("{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}",
                           ["messages": [["role": "system", "content": "s"]]])
        }
        do {
            _ = try render("x\n{{ raise_exception('bad: ' ~ messages|length) }}")
            XCTFail("expected an error")
        } catch let error as TemplateError {
            XCTAssertEqual(error, TemplateError(.raised, "bad: 1", line: 2))
            XCTAssertEqual(error.description, "template raised an exception: bad: 1")
        } catch {
            XCTFail("\(error)")
        }
    }

    func testRunawayMacroRecursionIsAnError() {
        assertError(.limit, containing: "recursion depth") {
            _ = try render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}")
        }
    }

    func testUnterminatedTags() {
        assertError(.syntax, containing: "never closed") { _ = try Template("Hello {{ name ") }
        assertError(.syntax, containing: "never closed") { _ = try Template("{% if true %}x{% endif ") }
        assertError(.syntax, containing: "comment") { _ = try Template("a {# no end") }
        assertError(.syntax, containing: "unterminated string") { _ = try Template("{{ 'abc }}") }
        assertError(.syntax, containing: "'endfor'") { _ = try Template("{% for m in messages %}{{ m.content }}") }
        assertError(.syntax, containing: "'if' block opened on line 2") { _ = try Template("line one\n{% if x %}\nno end") }
        assertError(.syntax, containing: "unexpected 'endif'") { _ = try Template("{% endif %}") }
    }

    func testUnknownFilterAndTest() {
        assertError(.syntax, containing: "unknown filter 'shout'") { _ = try Template("{{ 'a' | shout }}") }
        assertError(.syntax, containing: "unknown test 'shouty'") { _ = try Template("{{ 'a' is shouty }}") }
        assertError(.unsupported, containing: "'wordwrap' filter") { _ = try Template("{{ 'a' | wordwrap }}") }
    }

    /// As in Jinja, an unknown filter inside an `if` only fails when that branch runs.
    func testUnknownFilterInsideIfFailsOnlyWhenReached() throws {
        let template = try Template("{% if add_generation_prompt %}{{ 'x' | shout }}{% endif %}ok")
        XCTAssertEqual(try template.render(["add_generation_prompt": false]), "ok")
        assertError(.syntax, containing: "unknown filter 'shout'") {
            _ = try template.render(["add_generation_prompt": true])
        }
    }

    func testRenderErrors() {
        assertError(.render, containing: "'nope' is undefined") { _ = try render("{{ nope.attr }}") }
        assertError(.render, containing: "'dict object' has no attribute 'x'") { _ = try render("{{ messages[0].x.y }}") }
        assertError(.render, containing: "'list object' has no element 3") { _ = try render("{{ messages[3]['role'] }}") }
        assertError(.render, containing: "can only concatenate str") { _ = try render("{{ 'a' + 1 }}") }
        assertError(.render, containing: "non-namespace") { _ = try render("{% set x = 1 %}{% set x.y = 2 %}") }
        assertError(.render, containing: "immutable") { _ = try render("{% set l = [] %}{{ l.append(1) }}") }
    }

    func testUnsupportedSyntax() {
        assertError(.unsupported, containing: "'include'") { _ = try Template("{% include 'x.jinja' %}") }
        assertError(.unsupported, containing: "recursive") { _ = try Template("{% for x in y recursive %}{% endfor %}") }
        assertError(.syntax, containing: "unknown tag 'frobnicate'") { _ = try Template("{% frobnicate %}") }
        assertError(.syntax, containing: "outside of a loop") { _ = try Template("{% break %}") }
    }
}
