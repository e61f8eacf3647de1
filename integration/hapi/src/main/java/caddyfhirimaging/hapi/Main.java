package caddyfhirimaging.hapi;

import ca.uhn.fhir.rest.server.RestfulServer;
import org.eclipse.jetty.ee10.servlet.ServletContextHandler;
import org.eclipse.jetty.ee10.servlet.ServletHolder;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.context.annotation.AnnotationConfigApplicationContext;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;

/**
 * Starts the HAPI FHIR JPA server on http://HAPI_HOST:HAPI_PORT/fhir
 * (defaults 127.0.0.1 and 8080) in embedded Jetty.
 */
public final class Main {
	private static final Logger ourLog = LoggerFactory.getLogger(Main.class);

	private Main() {}

	public static void main(String[] args) throws Exception {
		long start = System.nanoTime();
		String host = Settings.get("hapi.host", "HAPI_HOST", "127.0.0.1");
		int port = Integer.parseInt(Settings.get("hapi.port", "HAPI_PORT", "8080"));

		AnnotationConfigApplicationContext spring = new AnnotationConfigApplicationContext(
				HapiServerConfig.class, HapiServerConfig.versionConfig());
		RestfulServer restfulServer = spring.getBean(RestfulServer.class);

		Server jetty = new Server();
		ServerConnector connector = new ServerConnector(jetty);
		connector.setHost(host);
		connector.setPort(port);
		jetty.addConnector(connector);

		ServletContextHandler context = new ServletContextHandler();
		context.setContextPath("/");
		ServletHolder holder = new ServletHolder("fhir", restfulServer);
		holder.setInitOrder(1);
		context.addServlet(holder, "/fhir/*");
		jetty.setHandler(context);

		// On SIGTERM: stop taking requests first, then close HAPI (its tasks, then the database).
		Runtime.getRuntime().addShutdownHook(new Thread(() -> {
			try {
				jetty.stop();
			} catch (Exception e) {
				ourLog.warn("stopping Jetty: {}", e.toString());
			}
			spring.close();
		}, "hapi-shutdown"));

		jetty.start();
		ourLog.info(
				"HAPI FHIR JPA server ({}) ready on http://{}:{}/fhir (H2 {}) in {} ms",
				HapiServerConfig.fhirVersion().toUpperCase(java.util.Locale.ROOT),
				host,
				port,
				HapiServerConfig.jdbcUrl(),
				(System.nanoTime() - start) / 1_000_000);
		if (Boolean.getBoolean("hapi.cds.training")) {
			// build.sh --cds: exercise the common request paths once so that their classes land in the
			// class-data-sharing archive the JVM writes at exit (-XX:ArchiveClassesAtExit), then exit.
			exercise("http://" + host + ":" + port + "/fhir");
			System.exit(0); // the shutdown hook stops Jetty and closes Spring

		}
		jetty.join();
	}

	private static void exercise(String theBase) throws Exception {
		HttpClient client = HttpClient.newHttpClient();
		String patient = "{\"resourceType\":\"Patient\",\"id\":\"cds-training\",\"name\":[{\"family\":\"Training\"}]}";
		String[][] requests = {
			{"GET", "/metadata", null},
			{"PUT", "/Patient/cds-training", patient},
			{"GET", "/Patient/cds-training", null},
			{"GET", "/Patient?name=Training&_count=1", null},
			{"GET", "/Patient/cds-training/_history?_format=xml", null},
			{"DELETE", "/Patient/cds-training", null},
		};
		for (String[] r : requests) {
			HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(theBase + r[1]))
					.header("Accept-Encoding", "gzip")
					.header("Content-Type", "application/fhir+json");
			b.method(r[0], r[2] == null ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofString(r[2]));
			HttpResponse<byte[]> resp = client.send(b.build(), HttpResponse.BodyHandlers.ofByteArray());
			ourLog.info("training request {} {} -> {}", r[0], r[1], resp.statusCode());
		}
	}
}
