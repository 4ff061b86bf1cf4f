import ArgumentParser
import Foundation
import Jinja
import RocketKV

/// An error the CLI raises itself, with the kind that sets its exit status.
struct CLIError: Error, CustomStringConvertible {
    /// sysexits.h statuses.
    enum Kind: Int32 {
        /// A bad command line: option, value, combination.
        case usage = 64
        /// Input data that is wrong: a model file, a prompt, a chat template.
        case badData = 65
        /// An input file that does not exist or cannot be read.
        case noInput = 66
        /// An output file or folder that cannot be created.
        case cannotCreate = 73
    }

    let kind: Kind
    let description: String

    static func usage(_ message: String) -> CLIError { CLIError(kind: .usage, description: message) }
    static func badData(_ message: String) -> CLIError { CLIError(kind: .badData, description: message) }
    static func noInput(_ message: String) -> CLIError { CLIError(kind: .noInput, description: message) }
}

/// Runs `check` (which may throw the library's errors about options) as part of a `validate()`: its errors
/// become `ValidationError`s, which ArgumentParser reports as usage errors (64).
func usage(_ check: () throws -> Void) throws {
    do { try check() } catch let error as ValidationError { throw error } catch { throw ValidationError(describe(error)) }
}

/// The exit status of an error that ends a command: 64 usage, 65 bad input data, 66 missing input file,
/// 73 output not creatable (sysexits.h), 1 for anything else (a failed download, an I/O error).
func exitStatus(of error: Error) -> Int32 {
    switch error {
    case let e as CLIError: return e.kind.rawValue
    case is ValidationError, is KVMethodError: return CLIError.Kind.usage.rawValue
    case let e as GGUFError: return (e.kind == .cannotOpen ? CLIError.Kind.noInput : .badData).rawValue
    case is TokenizerError, is ChatTemplateError, is TemplateError, is InferenceError: return CLIError.Kind.badData.rawValue
    case let e as CocoaError where e.isFileError:
        // Foundation's ranges: reading 256...511, writing 512...767.
        return (e.errorCode < 512 ? CLIError.Kind.noInput : .cannotCreate).rawValue
    default: return 1
    }
}

/// One line describing an error: the library's errors describe themselves; file-system errors name the path and
/// the system's reason instead of printing an `NSError` dump.
func describe(_ error: Error) -> String {
    if let error = error as? CocoaError {
        let underlying = error.userInfo[NSUnderlyingErrorKey] as? NSError
        let reason = underlying.flatMap { $0.domain == NSPOSIXErrorDomain ? String(cString: strerror(Int32($0.code))) : nil }
            ?? (error.errorCode < 512 ? "cannot read" : "cannot write")
        let path = error.filePath ?? error.url?.path ?? "a file"
        return "\(path): \(reason)"
    }
    return String(describing: error).split(separator: "\n").joined(separator: " ")
}

extension RocketKVCommand {
    /// Parses the command line (usage errors are ArgumentParser's, with the usage text; a `validate()` throws
    /// `ValidationError`s only, see `usage(_:)`), then runs the command;
    /// an error it throws ends the process with one line on stderr and the status `exitStatus(of:)` gives.
    static func main() async {
        if let simd = ProcessInfo.processInfo.environment["ROCKETKV_SIMD"], !["portable", "avx2", "avx512"].contains(simd) {
            fail(CLIError.usage("ROCKETKV_SIMD='\(simd)' must be portable, avx2 or avx512 (it caps the kernels' SIMD level)"))
        }
        var command: ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            exit(withError: error)
        }
        do {
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            // ArgumentParser's own errors also come from `run()` (`help <command>`, `--help` on a subcommand,
            // CleanExit, ExitCode): it prints them itself, help text to stdout with status 0.
            if String(reflecting: type(of: error)).hasPrefix("ArgumentParser.") { exit(withError: error) }
            fail(error)
        }
    }

    private static func fail(_ error: Error) -> Never {
        printError("Error: \(describe(error))")
        Foundation.exit(exitStatus(of: error))
    }
}
