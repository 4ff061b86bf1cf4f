/// Bounds on parsing and rendering. Templates can come from untrusted files (a model's chat
/// template), so whatever a template does, parsing and rendering end soon, in bounded memory and
/// stack, with a `TemplateError` of kind `.limit` when a bound is passed. The defaults are far
/// above what real chat templates need: a 100-message chat renders in under 10,000 steps.
public struct Limits: Sendable, Equatable {
    /// Work per render. One step is a statement run, an expression evaluated or a loop iteration;
    /// building, comparing or printing values costs a step per list/dict element and per 256
    /// bytes of string handled. Default 1,000,000 (about a second in a debug build).
    public var maxSteps = 1_000_000
    /// UTF-8 bytes of the rendered text, and of any one string built while rendering. Default 1 MiB.
    public var maxOutputBytes = 1 << 20
    /// Elements of any one list built while rendering (`range()`, `*`, `+`, `split()`...). Default 100,000.
    public var maxListLength = 100_000
    /// How deep the template may nest: brackets, blocks, and chains such as `not not x`, `a + b + c`
    /// or `x|f|g` count a level each. Also bounds how deep the lists and dicts a render builds may
    /// nest, and how deep printing a value goes. Parsing takes up to about 9 KiB of stack a level
    /// in a debug build, 2 KiB in release. Default 200.
    public var maxNestingDepth = 200
    /// How deep rendering may recurse: a statement inside a statement, an expression inside an
    /// expression, a macro call inside a macro call each count a level. Runaway macro recursion
    /// stops here. A level takes up to about 7 KiB of stack in a debug build, 2 KiB in release:
    /// the defaults fit an 8 MiB stack (the main thread's) in a debug build and 1 MiB in release;
    /// lower both for threads with smaller stacks. Default 500.
    public var maxRecursionDepth = 500

    public init() {}
}

/// What one render has used of its `Limits`, shared by the copies of the interpreter that
/// render it; also keeps the reference cycles a render can make (namespaces, macros and the frames
/// they close over) so that `finish` can break them.
final class RenderBudget {
    let limits: Limits
    private var steps = 0
    private var depth = 0
    private var namespaces: [JinjaNamespace] = []
    private var macroFrames: [JinjaFrame] = []

    init(_ limits: Limits) {
        self.limits = limits
    }

    /// Counts `count` steps of work.
    func charge(_ count: Int = 1) throws {
        steps += count
        if steps > limits.maxSteps {
            throw TemplateError("the template took more than \(limits.maxSteps) steps to render", kind: .limit)
        }
    }

    /// Counts the work of building `value`, and checks its size against the limits.
    func charge(building value: JinjaValue) throws {
        switch value {
        case .string(let s): try checkLength(of: s)
        case .array(let items): try checkLength(items.count)
        default: break
        }
        try charge(Self.cost(of: value))
    }

    /// Steps for handling `value` once: its elements, or its bytes in 256-byte pieces.
    static func cost(of value: JinjaValue) -> Int {
        switch value {
        case .string(let s): return 1 + s.utf8.count >> 8
        case .array(let items): return 1 + items.count
        case .dict(let dict): return 1 + dict.count
        default: return 1
        }
    }

    func checkLength(of text: String) throws {
        try checkBytes(text.utf8.count)
    }

    /// Throws when a string of `bytes` UTF-8 bytes would be longer than the limit.
    func checkBytes(_ bytes: Int) throws {
        if bytes > limits.maxOutputBytes {
            throw TemplateError("the template built a string longer than \(limits.maxOutputBytes) bytes", kind: .limit)
        }
    }

    /// Throws when a list of `count` elements would be longer than the limit.
    func checkLength(_ count: Int) throws {
        if count > limits.maxListLength {
            throw TemplateError("the template built a list longer than \(limits.maxListLength) elements", kind: .limit)
        }
    }

    /// Goes one recursion level deeper; each call is paired with a `leave()`.
    func enter() throws {
        guard depth < limits.maxRecursionDepth else {
            throw TemplateError("maximum recursion depth (\(limits.maxRecursionDepth)) exceeded", kind: .limit)
        }
        depth += 1
    }

    func leave() { depth -= 1 }

    /// Throws unless a list or dict holding `items` nests no deeper than the limit. Namespaces
    /// count as one level: they are kept alive until `finish`, which empties them first.
    func checkNesting<S: Sequence>(of items: S) throws where S.Element == JinjaValue {
        func walk(_ value: JinjaValue, _ level: Int) throws {
            guard level <= limits.maxNestingDepth else {
                throw TemplateError("the template built lists or dicts nested deeper than \(limits.maxNestingDepth) levels",
                                    kind: .limit)
            }
            switch value {
            case .array(let items):
                try charge(items.count)
                for item in items { try walk(item, level + 1) }
            case .dict(let dict):
                try charge(dict.count)
                for item in dict.values { try walk(item, level + 1) }
            default: break
            }
        }
        for item in items { try walk(item, 2) }
    }

    func keep(_ namespace: JinjaNamespace) { namespaces.append(namespace) }
    func keep(macroFrame frame: JinjaFrame) { macroFrames.append(frame) }

    /// Breaks the cycles the render made (a namespace holding itself, a macro stored in the frame it
    /// closes over), namespaces first so that no chain of them is freed recursively.
    func finish() {
        for namespace in namespaces { namespace.attributes = JinjaDict() }
        for frame in macroFrames { frame.variables = [:] }
    }
}
