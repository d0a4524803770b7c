using System.Reflection;
using System.Reflection.Emit;

namespace Gateway.Tests.Architecture;

/// <summary>
/// Which folders (second namespace segment: <c>Gateway.Quotas</c> → <c>Quotas</c>) the compiled gateway's types
/// reference: through base types, interfaces, fields, properties, signatures, attributes, and every type, method and
/// field token in their method bodies' IL (so a reference that never appears in a signature still counts).
/// </summary>
internal static class FolderDependencies
{
    private const BindingFlags Everything = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;

    private static readonly Dictionary<short, OpCode> OpCodesByValue = typeof(OpCodes)
        .GetFields(BindingFlags.Public | BindingFlags.Static)
        .Select(f => (OpCode)f.GetValue(null)!)
        .ToDictionary(o => o.Value);

    /// <summary>The folder a type belongs to, or null for types outside <c>Gateway.*</c> (framework, Program).</summary>
    public static string? FolderOf(Type type)
    {
        var ns = type.Namespace;
        if (ns is null || !ns.StartsWith("Gateway.", StringComparison.Ordinal))
        {
            return null;
        }

        var rest = ns["Gateway.".Length..];
        var dot = rest.IndexOf('.');
        return dot < 0 ? rest : rest[..dot];
    }

    /// <summary>Every edge from one folder to another, each with one example (type → referenced type) for the failure message.</summary>
    public static Dictionary<(string From, string To), string> Edges(Assembly assembly)
    {
        var edges = new Dictionary<(string, string), string>();
        foreach (var type in assembly.GetTypes())
        {
            if (FolderOf(type) is not { } from)
            {
                continue;
            }

            foreach (var referenced in ReferencedTypes(type))
            {
                if (FolderOf(referenced) is { } to && to != from)
                {
                    edges.TryAdd((from, to), $"{type.FullName} → {referenced.FullName}");
                }
            }
        }

        return edges;
    }

    public static IEnumerable<Type> ReferencedTypes(Type type)
    {
        var found = new HashSet<Type>();
        Add(found, type.BaseType);
        foreach (var i in type.GetInterfaces())
        {
            Add(found, i);
        }

        AddAttributes(found, type.CustomAttributes);
        foreach (var field in type.GetFields(Everything))
        {
            Add(found, field.FieldType);
            AddAttributes(found, field.CustomAttributes);
        }

        foreach (var property in type.GetProperties(Everything))
        {
            Add(found, property.PropertyType);
        }

        foreach (var e in type.GetEvents(Everything))
        {
            Add(found, e.EventHandlerType);
        }

        foreach (var method in type.GetMethods(Everything).Cast<MethodBase>().Concat(type.GetConstructors(Everything)))
        {
            if (method is MethodInfo info)
            {
                Add(found, info.ReturnType);
            }

            foreach (var parameter in method.GetParameters())
            {
                Add(found, parameter.ParameterType);
            }

            AddAttributes(found, method.CustomAttributes);
            AddBody(found, method);
        }

        return found;
    }

    private static void AddAttributes(HashSet<Type> found, IEnumerable<CustomAttributeData> attributes)
    {
        foreach (var attribute in attributes)
        {
            Add(found, attribute.AttributeType);
        }
    }

    private static void AddBody(HashSet<Type> found, MethodBase method)
    {
        var body = method.GetMethodBody();
        if (body is null)
        {
            return;
        }

        foreach (var local in body.LocalVariables)
        {
            Add(found, local.LocalType);
        }

        foreach (var member in MembersInBody(method))
        {
            switch (member)
            {
                case Type t:
                    Add(found, t);
                    break;
                case MethodBase m:
                    Add(found, m.DeclaringType);
                    if (m is MethodInfo mi)
                    {
                        Add(found, mi.ReturnType);
                        if (mi.IsGenericMethod)
                        {
                            foreach (var argument in mi.GetGenericArguments())
                            {
                                Add(found, argument);
                            }
                        }
                    }

                    break;
                case FieldInfo f:
                    Add(found, f.DeclaringType);
                    Add(found, f.FieldType);
                    break;
            }
        }
    }

    /// <summary>
    /// Calls that put a gateway type into, or take one out of, <c>HttpContext.Features</c> (<c>Get&lt;T&gt;</c>,
    /// <c>Set&lt;T&gt;</c>, indexer by type): per-request state travels as stage results, not through the features.
    /// </summary>
    public static List<string> FeatureUsesOfOwnTypes(Assembly assembly)
    {
        var uses = new List<string>();
        foreach (var type in assembly.GetTypes())
        {
            foreach (var method in type.GetMethods(Everything).Cast<MethodBase>().Concat(type.GetConstructors(Everything)))
            {
                foreach (var member in MembersInBody(method))
                {
                    if (member is MethodInfo { IsGenericMethod: true } called
                        && called.DeclaringType?.FullName == "Microsoft.AspNetCore.Http.Features.IFeatureCollection"
                        && called.GetGenericArguments().FirstOrDefault(a => FolderOf(a) is not null) is { } own)
                    {
                        uses.Add($"{type.FullName}.{method.Name} → Features.{called.Name}<{own.FullName}>");
                    }
                }
            }
        }

        return uses;
    }

    /// <summary>Every type, method and field token in a method body's IL, resolved.</summary>
    private static IEnumerable<MemberInfo> MembersInBody(MethodBase method)
    {
        var il = method.GetMethodBody()?.GetILAsByteArray();
        if (il is null)
        {
            yield break;
        }

        var module = method.Module;
        var typeArguments = method.DeclaringType?.IsGenericType == true ? method.DeclaringType.GetGenericArguments() : null;
        var methodArguments = method.IsGenericMethod ? method.GetGenericArguments() : null;
        var position = 0;
        while (position < il.Length)
        {
            short value = il[position++];
            if (value == 0xFE)
            {
                value = unchecked((short)(0xFE00 | il[position++]));
            }

            var opCode = OpCodesByValue[value];
            switch (opCode.OperandType)
            {
                case OperandType.InlineMethod or OperandType.InlineField or OperandType.InlineType or OperandType.InlineTok:
                {
                    var token = BitConverter.ToInt32(il, position);
                    position += 4;
                    if (module.ResolveMember(token, typeArguments, methodArguments) is { } member)
                    {
                        yield return member;
                    }

                    break;
                }

                case OperandType.InlineSwitch:
                    position += 4 + (4 * BitConverter.ToInt32(il, position));
                    break;
                default:
                    position += OperandSize(opCode.OperandType);
                    break;
            }
        }
    }

    private static int OperandSize(OperandType operand) => operand switch
    {
        OperandType.InlineNone => 0,
        OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar => 1,
        OperandType.InlineVar => 2,
        OperandType.InlineI8 or OperandType.InlineR => 8,
        _ => 4, // InlineBrTarget, InlineI, InlineSig, InlineString, ShortInlineR
    };

    /// <summary>A type and what it is built from: element types, generic arguments (a <c>Task&lt;Admission&gt;</c> references Quotas).</summary>
    private static void Add(HashSet<Type> found, Type? type)
    {
        if (type is null || type.IsGenericParameter || !found.Add(type))
        {
            return;
        }

        if (type.HasElementType)
        {
            Add(found, type.GetElementType());
        }

        if (type.IsGenericType && !type.IsGenericTypeDefinition)
        {
            foreach (var argument in type.GetGenericArguments())
            {
                Add(found, argument);
            }
        }
    }
}
