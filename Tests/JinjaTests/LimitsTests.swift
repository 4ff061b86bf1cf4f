import Foundation
import Jinja
import XCTest

/// Hostile templates: each must end quickly with a clear error (or a defined result), never a
/// trap, a hang or a stack overflow.
final class LimitsTests: XCTestCase {
    private let intMin = "(-9223372036854775807 - 1)"

    private func repeated(_ piece: String, _ count: Int) -> String { String(repeating: piece, count: count) }

    /// Renders `source`, expecting a `.limit` error whose message contains `text`, within `seconds`.
    private func assertLimit(_ text: String, seconds: Double = 5, limits: Limits = Limits(), _ source: String,
                             file: StaticString = #filePath, line: UInt = #line) {
        let start = Date()
        assertError(.limit, containing: text, file: file, line: line) {
            _ = try Template(source, limits: limits).render([:])
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), seconds, "took too long", file: file, line: line)
    }

    // MARK: - Nesting while parsing

    func testDeepSyntaxIsAnErrorNotAStackOverflow() {
        let depth = 5000
        assertLimit("brackets nest deeper than 200", "{{ \(repeated("(", depth))1\(repeated(")", depth)) }}")
        assertLimit("brackets nest deeper than 200", "{{ \(repeated("[", depth))1\(repeated("]", depth)) }}")
        assertLimit("nests deeper than 200", "{{ \(repeated("not ", depth))x }}")
        assertLimit("nests deeper than 200", "{{ \(repeated("- ", depth))1 }}")
        assertLimit("nests deeper than 200", "{{ 'a'\(repeated("|upper", depth)) }}")
        assertLimit("nests deeper than 200", "{{ x\(repeated(".a", depth)) }}")
        assertLimit("nests deeper than 200", "{{ \(repeated("1 + ", 100_000))1 }}")
        assertLimit("nests deeper than 200", "{{ \(repeated("x if y else ", depth))z }}")
        assertLimit("nests deeper than 200", "\(repeated("{% if x %}", depth))\(repeated("{% endif %}", depth))")
        assertLimit("nests deeper than 200", "\(repeated("{% for x in y %}", depth))\(repeated("{% endfor %}", depth))")
    }

    func testNestingWithinTheLimitRenders() throws {
        XCTAssertEqual(try render("{{ \(repeated("(", 150))1\(repeated(")", 150)) }}"), "1")
        XCTAssertEqual(try render("{{ \(repeated("1 + ", 150))1 }}"), "151")
        XCTAssertEqual(try render("\(repeated("{% if true %}", 150))x\(repeated("{% endif %}", 150))"), "x")
        var limits = Limits()
        limits.maxNestingDepth = 10
        assertLimit("nests deeper than 10", limits: limits, "{{ \(repeated("not ", 20))x }}")
    }

    /// Found while bounding the lexer: a number at the very end of the source read past it.
    func testNumberAtTheEndOfTheSource() {
        assertError(.syntax, containing: "never closed") { _ = try Template("{{ 12") }
    }

    // MARK: - Work, output and recursion while rendering

    func testRunawayMacroRecursion() {
        assertLimit("maximum recursion depth (500)", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}")
        // Each call nested 150 blocks deep: the recursion limit counts every level, not only calls.
        let deep = "\(repeated("{% if true %}", 150)){{ f(n + 1) }}\(repeated("{% endif %}", 150))"
        assertLimit("maximum recursion depth", "{% macro f(n) %}\(deep){% endmacro %}{{ f(0) }}")
    }

    func testExponentialMacroFanOutStops() {
        assertLimit("more than 1000000 steps",
                    "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}")
    }

    func testOutputDoublingStops() {
        assertLimit("string longer than 1048576 bytes", """
            {% set ns = namespace(s='x') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}
            """)
        assertLimit("list longer than 100000 elements", """
            {% set ns = namespace(l=[1]) %}{% for i in range(100) %}{% set ns.l = ns.l + ns.l %}{% endfor %}
            """)
        assertLimit("longer than 1048576 bytes", "{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}")
        assertLimit("longer than 1048576 bytes", "{% macro m() %}{{ 'x' * 1000 }}{% endmacro %}"
                    + "{% for i in range(10000) %}{{ m() }}{% endfor %}")
    }

    func testLoopsStop() {
        assertLimit("more than 1000000 steps",
                    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")
        var limits = Limits()
        limits.maxSteps = 1000
        assertLimit("more than 1000 steps", limits: limits, "{% for i in range(10000) %}{% endfor %}")
    }

    /// `[x, x]` shares `x`: a few steps build a value that takes 2^n steps to walk.
    func testSharedListsCannotBlowUp() {
        let shared = "{% set ns = namespace(x=['" + repeated("x", 30) + "']) %}"
            + "{% for i in range(16) %}{% set ns.x = [ns.x, ns.x] %}{% endfor %}"
        assertLimit("string longer than", shared + "{{ ns.x|tojson }}")
        assertLimit("string longer than", shared + "{{ ns.x }}")
        assertLimit("steps", shared + "{% for i in range(10) %}{{ ns.x == ns.x }}{% endfor %}")
        assertLimit("steps", "{% set ns = namespace(x=[1]) %}{% for i in range(64) %}{% set ns.x = [ns.x, ns.x] %}{% endfor %}")
    }

    func testValuesNestDeeperThanTheLimitAreAnError() {
        assertLimit("nested deeper than 200", "{% set ns = namespace(x=1) %}{% for i in range(1000) %}{% set ns.x = [ns.x] %}{% endfor %}")
        assertLimit("nested deeper than 200", "{% set ns = namespace(x=1) %}{% for i in range(1000) %}{% set ns.x = dict(a=ns.x) %}{% endfor %}")
        // A chain of namespaces is fine to build, and freed without deep recursion; printing it is bounded.
        assertLimit("printed a value nested deeper than 200", """
            {% set ns = namespace(head=none) %}{% for i in range(50000) %}{% set ns.head = namespace(next=ns.head) %}\
            {% endfor %}{{ ns.head }}
            """)
    }

    func testNamespaceHoldingItselfPrintsAsPythonDoes() throws {
        XCTAssertEqual(try render("{% set ns = namespace(a=1) %}{% set ns.me = ns %}{{ ns }}"),
                       "<Namespace {'a': 1, 'me': <Namespace {...}>}>")
    }

    // MARK: - Sizes

    func testRangeLength() {
        assertLimit("range too big, maximum size is 100000", "{{ range(1000000000)|length }}")
        assertLimit("range too big", "{{ range(\(intMin), 9223372036854775807)|length }}")
        assertLimit("range too big", "{{ range(9223372036854775807, \(intMin), -1)|length }}")
        XCTAssertEqual(try render("{{ range(9223372036854775806, 9223372036854775807, 9223372036854775807)|list }}"),
                       "[9223372036854775806]")
    }

    func testRepetitionSize() throws {
        assertLimit("string longer than", "{{ 'ab' * 1000000000 }}")
        assertLimit("string longer than", "{{ 'ab' * 9223372036854775807 }}")
        assertLimit("list longer than", "{{ [1, 2] * 9223372036854775807 }}")
        XCTAssertEqual(try render("{{ 'ab' * -3 }}|{{ [1] * -1 }}|{{ 2 * 'ab' }}"), "|[]|abab")
    }

    func testStringBuildersStayWithinTheLimit() {
        assertLimit("string longer than", "{{ ('a' * 1000000)|replace('a', 'aaaa') }}")
        assertLimit("string longer than", "{{ ('a' * 1000000).replace('a', 'aaaa') }}")
        assertLimit("string longer than", "{{ 'abc'|replace('', 'x' * 1000000) }}")
        assertLimit("string longer than", "{{ (['x' * 100000] * 100)|join }}")
        assertLimit("string longer than", "{{ ','.join(['x' * 100000] * 100) }}")
        assertLimit("string longer than", "{{ ('{0}' * 100).format('x' * 100000) }}")
        assertLimit("string longer than", "{{ ('%s' * 100) % (['x' * 100000] * 100) }}")
        assertLimit("string longer than", "{{ 'a'|indent(1000000000) }}")
        assertLimit("string longer than", "{{ ('a\\n' * 100000)|indent(100) }}")
        assertLimit("string longer than", "{{ [1]|tojson(indent=1000000000) }}")
    }

    // MARK: - Checked arithmetic

    func testIntegerOverflowIsAnError() {
        assertError(.render, containing: "integer overflow in unary -") { _ = try render("{{ -\(intMin) }}") }
        assertError(.render, containing: "integer overflow in '//'") { _ = try render("{{ \(intMin) // -1 }}") }
        assertError(.render, containing: "integer overflow in '+'") { _ = try render("{{ 9223372036854775807 + 1 }}") }
        assertError(.render, containing: "integer overflow in '*'") { _ = try render("{{ 4294967296 * 4294967296 }}") }
        assertError(.render, containing: "integer overflow in '**'") { _ = try render("{{ 2 ** 64 }}") }
        assertError(.render, containing: "integer overflow in abs()") { _ = try render("{{ \(intMin)|abs }}") }
        assertError(.render, containing: "integer overflow in sum()") { _ = try render("{{ [9223372036854775807, 1]|sum }}") }
    }

    func testArithmeticEdgesHaveDefinedResults() throws {
        XCTAssertEqual(try render("{{ \(intMin) % -1 }} {{ 7 % -1 }} {{ -7 // 2 }} {{ -7 % 3 }}"), "0 0 -4 2")
        XCTAssertEqual(try render("{{ (-2) ** 63 }} {{ 1 ** 9223372036854775807 }} {{ (-1) ** 9223372036854775807 }}"),
                       "-9223372036854775808 1 -1")
        XCTAssertEqual(try render("{{ 2 ** -1 }} {{ 0 ** 0 }}"), "0.5 1")
    }

    func testDivisionByZeroIsAnError() {
        assertError(.render, containing: "division by zero") { _ = try render("{{ 1 / 0 }}") }
        assertError(.render, containing: "integer division or modulo by zero") { _ = try render("{{ 1 // 0 }}") }
        assertError(.render, containing: "integer division or modulo by zero") { _ = try render("{{ 1 % 0 }}") }
        assertError(.render, containing: "float floor division by zero") { _ = try render("{{ 1.5 // 0 }}") }
        assertError(.render, containing: "float modulo") { _ = try render("{{ 1.5 % 0.0 }}") }
        assertError(.render, containing: "cannot be raised to a negative power") { _ = try render("{{ 0 ** -1 }}") }
        assertError(.render, containing: "divisibleby needs integers") { _ = try render("{{ 4 is divisibleby 0 }}") }
    }

    func testFloatToIntConversions() throws {
        assertError(.render, containing: "does not fit a 64-bit integer") { _ = try render("{{ 1e300|int }}") }
        assertError(.render, containing: "does not fit a 64-bit integer") { _ = try render("{{ '-1e300'|int }}") }
        // Jinja's int() falls back to the default for what Python cannot convert.
        XCTAssertEqual(try render("{{ 'nan'|float|int }} {{ 'inf'|float|int(7) }} {{ 1e18|int }} {{ -2.9|int }}"),
                       "0 7 1000000000000000000 -2")
        XCTAssertEqual(try render("{{ 9.2e18|int }}"), "9200000000000000000")
        assertError(.render, containing: "does not fit") { _ = try render("{{ 9.3e18|int }}") }
    }

    /// A base Python rejects raises ValueError there, which Jinja's int() catches: the value is then
    /// read as a float.
    func testIntFilterWithABadBase() throws {
        XCTAssertEqual(try render("{{ 'ff'|int(base=16) }} {{ '12'|int(base=99) }} {{ '12'|int(base=-1) }} {{ 'ff'|int(base=1) }}"),
                       "255 12 12 0")
    }

    func testPercentDFormatting() throws {
        XCTAssertEqual(try render("{{ '%d' % 1e300 }}"), """
            1000000000000000052504760255204420248704468581108159154915854115511802457988908195786371375080447864\
            0437044438328838781769425232353604305756447921847867069828483872009265758037378302337947880900593689\
            5323497079994508111903896764088007465274278014249457925878882005684283811566947219638686545940054016\
            0
            """)
        XCTAssertEqual(try render("{{ '%d|%i' % (-2.7, 9.22e18) }}"), "-2|9220000000000000000")
        assertError(.render, containing: "cannot convert float NaN to integer") { _ = try render("{{ '%d' % ('nan'|float) }}") }
        assertError(.render, containing: "cannot convert float infinity to integer") {
            _ = try render("{{ '%d' % ('-inf'|float) }}")
        }
    }

    func testFormatIndexes() throws {
        assertError(.render, containing: "KeyError: '-1'") { _ = try render("{{ '{-1}'.format('a') }}") }
        assertError(.render, containing: "Replacement index 5 out of range") { _ = try render("{{ '{5}'.format('a') }}") }
        assertError(.render, containing: "out of range") { _ = try render("{{ '{99999999999999999999}'.format('a') }}") }
        XCTAssertEqual(try render("{{ '{1}{0}{x}'.format('a', 'b', x='c') }}"), "bac")
    }

    func testIndentWithANegativeWidthIndentsNothing() throws {
        XCTAssertEqual(try render("{{ 'a\\nb'|indent(-3) }}|{{ 'a\\nb'|indent(-3, true) }}"), "a\nb|a\nb")
        XCTAssertEqual(try render("{{ [1]|tojson(indent=-2) }}"), "[\n1\n]")
    }

    func testCycleOnALoopLookalike() throws {
        assertError(.render, containing: "loop.index0 is not an integer") {
            _ = try render("{% set l = {'index0': 'x', 'revindex0': 0} %}{{ l.cycle(1, 2) }}")
        }
        XCTAssertEqual(try render("{% set l = {'index0': -1, 'revindex0': 0} %}{{ l.cycle(1, 2) }}"), "2")
        XCTAssertEqual(try render("{% for x in 'abc' %}{{ loop.cycle('o', 'e') }}{% endfor %}"), "oeo")
    }

    /// Found while checking for traps: a NaN dict key was stored but could never be found again.
    func testNaNDictKeys() throws {
        XCTAssertEqual(try render("{% set n = 'nan'|float %}{{ {n: 1} }} {{ {n: 1, n: 2}|length }} {{ {n: 1}[n] }}"),
                       "{nan: 1} 1 1")
    }

    func testLimitErrorsCarryTheLine() {
        do {
            _ = try Template("a\n{{ 'x' * 10000000 }}").render([:])
            XCTFail("expected an error")
        } catch let error as TemplateError {
            XCTAssertEqual(error.kind, .limit)
            XCTAssertEqual(error.line, 2)
            XCTAssertEqual(error.description,
                           "template exceeded a limit (line 2): the template built a string longer than 1048576 bytes")
        } catch {
            XCTFail("\(error)")
        }
    }
}
