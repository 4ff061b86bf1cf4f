import Foundation
import Hummingbird

/// An error in OpenAI's JSON shape (`{"error": {"message", "type", "param", "code"}}`) with its HTTP status.
public struct APIError: HTTPResponseError, CustomStringConvertible {
    public let status: HTTPResponse.Status
    public let message: String
    public let type: String
    public let param: String?
    public let code: String?

    public init(_ status: HTTPResponse.Status, _ message: String, type: String = "invalid_request_error", param: String? = nil, code: String? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
    }

    public var description: String { "\(status.code) \(message)" }

    /// The JSON body: `{"error": {...}}`.
    var body: [String: JSONValue] {
        ["error": .object(["message": .string(message), "type": .string(type),
                           "param": param.map(JSONValue.string) ?? .null, "code": code.map(JSONValue.string) ?? .null])]
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response { jsonResponse }

    /// The error as a response.
    var jsonResponse: Response { RocketKVServer.jsonResponse(body, status: status) }

    static func badRequest(_ message: String, param: String? = nil, code: String? = nil) -> APIError {
        APIError(.badRequest, message, param: param, code: code)
    }
}

/// A JSON value for responses built field by field (encoded without escaping slashes, keys sorted).
enum JSONValue: Encodable, Sendable {
    case string(String), int(Int), double(Double), bool(Bool), null
    case array([JSONValue]), object([String: JSONValue])

    func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let v): try container.encode(v)
        case .int(let v): try container.encode(v)
        case .double(let v): try container.encode(v.isFinite ? v : 0)
        case .bool(let v): try container.encode(v)
        case .null: try container.encodeNil()
        case .array(let v): try container.encode(v)
        case .object(let v): try container.encode(v)
        }
    }

    /// The compact JSON text.
    var data: Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Every case encodes (non-finite doubles are written as 0), so this cannot fail.
        return (try? encoder.encode(self)) ?? Data("null".utf8)
    }
}

/// A JSON response.
func jsonResponse(_ object: [String: JSONValue], status: HTTPResponse.Status = .ok) -> Response {
    Response(status: status, headers: [.contentType: "application/json"],
             body: ResponseBody(byteBuffer: ByteBuffer(bytes: JSONValue.object(object).data)))
}
