package caddyfhirimaging.hapi;

/** Reads a setting from a system property first, then an environment variable, then a default. */
final class Settings {
	private Settings() {}

	static String get(String theProperty, String theEnv, String theDefault) {
		String v = System.getProperty(theProperty);
		if (v == null || v.isBlank()) {
			v = System.getenv(theEnv);
		}
		return (v == null || v.isBlank()) ? theDefault : v.trim();
	}
}
