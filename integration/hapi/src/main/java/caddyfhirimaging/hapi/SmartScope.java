package caddyfhirimaging.hapi;

import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * One SMART on FHIR resource scope, v1 ({@code patient/ImagingStudy.read}, {@code .write}, {@code .*}) or
 * v2 ({@code user/*.rs}, any ordered subset of {@code cruds}), reduced to its context, resource type and
 * v2 permission letters.
 *
 * @param context      {@code patient}, {@code user} or {@code system}
 * @param resourceType a resource type or {@code *}
 * @param permissions  a non-empty ordered subset of {@code cruds}
 */
record SmartScope(String context, String resourceType, String permissions) {

	private static final Pattern SCOPE =
			Pattern.compile("(patient|user|system)/([A-Z][A-Za-z]*|\\*)\\.(read|write|\\*|c?r?u?d?s?)");

	/** The scope, or null for anything that is not a plain resource scope (v2 {@code ?query} scopes included). */
	static SmartScope parse(String theScope) {
		Matcher m = SCOPE.matcher(theScope);
		if (!m.matches() || m.group(3).isEmpty()) {
			return null;
		}
		String permissions =
				switch (m.group(3)) {
					case "read" -> "rs";
					case "write" -> "cud";
					case "*" -> "cruds";
					default -> m.group(3);
				};
		return new SmartScope(m.group(1), m.group(2), permissions);
	}

	boolean isPatientContext() {
		return context.equals("patient");
	}

	boolean covers(String theResourceType) {
		return resourceType.equals("*") || resourceType.equals(theResourceType);
	}

	boolean has(char thePermission) {
		return permissions.indexOf(thePermission) >= 0;
	}

	boolean canRead() {
		return has('r') || has('s');
	}

	/** v2 spelling, e.g. {@code patient/ImagingStudy.rs}. */
	String name() {
		return context + "/" + resourceType + "." + permissions;
	}
}
