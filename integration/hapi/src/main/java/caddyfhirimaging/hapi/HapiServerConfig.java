package caddyfhirimaging.hapi;

import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.api.config.ThreadPoolFactoryConfig;
import ca.uhn.fhir.jpa.api.dao.IFhirSystemDao;
import ca.uhn.fhir.batch2.jobs.config.Batch2JobsConfig;
import ca.uhn.fhir.jpa.batch2.JpaBatch2Config;
import ca.uhn.fhir.jpa.binstore.DatabaseBinaryContentStorageSvcImpl;
import ca.uhn.fhir.jpa.config.HapiJpaConfig;
import ca.uhn.fhir.jpa.config.r4.JpaR4Config;
import ca.uhn.fhir.jpa.config.util.HapiEntityManagerFactoryUtil;
import ca.uhn.fhir.jpa.model.config.PartitionSettings;
import ca.uhn.fhir.jpa.model.config.SubscriptionSettings;
import ca.uhn.fhir.jpa.model.dialect.HapiFhirH2Dialect;
import ca.uhn.fhir.jpa.provider.JpaCapabilityStatementProvider;
import ca.uhn.fhir.jpa.provider.JpaSystemProvider;
import ca.uhn.fhir.jpa.provider.dstu3.JpaConformanceProviderDstu3;
import ca.uhn.fhir.jpa.search.DatabaseBackedPagingProvider;
import ca.uhn.fhir.jpa.subscription.channel.config.SubscriptionChannelConfig;
import ca.uhn.fhir.jpa.subscription.match.config.SubscriptionProcessorConfig;
import ca.uhn.fhir.jpa.subscription.match.deliver.email.IEmailSender;
import ca.uhn.fhir.jpa.subscription.submit.config.SubscriptionSubmitterConfig;
import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.narrative2.NullNarrativeGenerator;
import ca.uhn.fhir.rest.api.EncodingEnum;
import ca.uhn.fhir.rest.server.ETagSupportEnum;
import ca.uhn.fhir.rest.server.HardcodedServerAddressStrategy;
import ca.uhn.fhir.rest.server.RestfulServer;
import ca.uhn.fhir.rest.server.provider.ResourceProviderFactory;
import ca.uhn.fhir.rest.server.util.ISearchParamRegistry;
import jakarta.persistence.EntityManagerFactory;
import org.apache.commons.dbcp2.BasicDataSource;
import org.hl7.fhir.dstu2.model.Subscription.SubscriptionChannelType;
import org.slf4j.LoggerFactory;
import org.springframework.beans.factory.config.ConfigurableListableBeanFactory;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.Import;
import org.springframework.context.annotation.Primary;
import org.springframework.orm.jpa.JpaTransactionManager;
import org.springframework.orm.jpa.LocalContainerEntityManagerFactoryBean;

import javax.sql.DataSource;
import java.net.URI;
import java.time.Duration;
import java.util.Properties;

/**
 * Spring wiring for a HAPI FHIR JPA server: FHIR R4 (or DSTU3, chosen at start, see
 * {@link #fhirVersion()}), H2, no full-text indexing, no validation, REST-hook subscriptions enabled.
 *
 * HAPI's own configuration classes ({@link JpaR4Config} or JpaDstu3Config, {@link HapiJpaConfig}, ...)
 * supply almost everything; this class only adds the pieces HAPI expects the
 * application to provide (database, settings, the servlet). {@link Main} starts Spring with this class
 * and one of {@link R4Config} and {@link Dstu3Config} (not nested here: Spring would
 * register a nested configuration class with its outer one, both versions at once).
 */
@Configuration
@Import({
	HapiJpaConfig.class,
	JpaBatch2Config.class,
	Batch2JobsConfig.class,
	ThreadPoolFactoryConfig.class,
	SubscriptionSubmitterConfig.class,
	SubscriptionProcessorConfig.class,
	SubscriptionChannelConfig.class
})
public class HapiServerConfig {

	/**
	 * The FHIR version served: HAPI_FHIR_VERSION (or -Dhapi.fhir.version) = r4 (default) or dstu3
	 * (stu3 is accepted for it too). Anything else is refused at start.
	 */
	static String fhirVersion() {
		String v = Settings.get("hapi.fhir.version", "HAPI_FHIR_VERSION", "r4").toLowerCase(java.util.Locale.ROOT);
		switch (v) {
			case "r4":
				return "r4";
			case "dstu3":
			case "stu3":
				return "dstu3";
			default:
				throw new IllegalArgumentException("HAPI_FHIR_VERSION must be r4 or dstu3, not " + v);
		}
	}

	/** The version-specific configuration class for {@link #fhirVersion()}. */
	static Class<?> versionConfig() {
		return fhirVersion().equals("dstu3") ? Dstu3Config.class : R4Config.class;
	}

	/**
	 * H2 in memory unless HAPI_DB_DIR (or -Dhapi.db.dir) names a directory for a file database.
	 * DB_CLOSE_ON_EXIT=FALSE: H2 must not close the database from its own shutdown hook while HAPI's
	 * background tasks still use it; it closes when Spring closes the connection pool.
	 */
	static String jdbcUrl() {
		String dir = Settings.get("hapi.db.dir", "HAPI_DB_DIR", "");
		if (dir.isBlank()) {
			return "jdbc:h2:mem:hapi;DB_CLOSE_DELAY=-1;DB_CLOSE_ON_EXIT=FALSE";
		}
		return "jdbc:h2:file:" + new java.io.File(dir, "hapi").getAbsolutePath() + ";DB_CLOSE_ON_EXIT=FALSE";
	}

	@Bean
	public JpaStorageSettings storageSettings() {
		JpaStorageSettings s = new JpaStorageSettings();
		// Client-assigned ids of any form (PUT Endpoint/my-id creates); server-assigned ids are
		// UUIDs so they can never collide with a client-assigned numeric id.
		s.setResourceClientIdStrategy(JpaStorageSettings.ClientIdStrategyEnum.ANY);
		s.setResourceServerIdStrategy(JpaStorageSettings.IdStrategyEnum.UUID);
		// Every search hits the database (HAPI otherwise reuses an identical search's results for 60 s,
		// which makes "create then search" tests flaky).
		s.setReuseCachedSearchResultsForMillis(null);
		// Absolute references (e.g. to a gateway URL) are stored as-is instead of being rejected.
		s.setAllowExternalReferences(true);
		// Not needed here and they cost write time.
		s.setIndexMissingFields(JpaStorageSettings.IndexEnabledEnum.DISABLED);
		s.setHibernateSearchIndexFullText(false);
		s.setHibernateSearchIndexSearchParams(false);
		s.setAdvancedHSearchIndexing(false);
		s.setExpungeEnabled(true);
		s.setAllowMultipleDelete(true);
		s.setFetchSizeDefaultMaximum(10000);
		if (smartAuthEnabled()) {
			// HAPI runs a batch's GET entries in parallel threads that share the request's user data and
			// authorization rules, which are not thread-safe (ConcurrentModificationException in
			// CompartmentSearchParameterModifications): run them one after the other.
			s.setBundleBatchPoolSize(1);
		}
		return s;
	}

	@Bean
	public PartitionSettings partitionSettings() {
		return new PartitionSettings();
	}

	@Bean
	public SubscriptionSettings subscriptionSettings() {
		SubscriptionSettings s = new SubscriptionSettings();
		s.addSupportedSubscriptionType(SubscriptionChannelType.RESTHOOK);
		return s;
	}

	/** Required by the subscription module; email subscriptions are not enabled. */
	@Bean
	public IEmailSender emailSender() {
		return theDetails -> {
			throw new UnsupportedOperationException("email subscriptions are not supported");
		};
	}

	@Bean
	public DatabaseBinaryContentStorageSvcImpl binaryStorageSvc() {
		return new DatabaseBinaryContentStorageSvcImpl();
	}

	@Bean(destroyMethod = "close")
	public BasicDataSource dataSource() {
		BasicDataSource ds = new BasicDataSource();
		ds.setDriver(new org.h2.Driver());
		ds.setUrl(jdbcUrl());
		ds.setUsername("sa");
		ds.setPassword("");
		ds.setMaxTotal(20);
		ds.setMaxWait(Duration.ofSeconds(30));
		return ds;
	}

	@Bean
	@Primary
	public LocalContainerEntityManagerFactoryBean entityManagerFactory(
			ConfigurableListableBeanFactory theBeanFactory,
			FhirContext theFhirContext,
			JpaStorageSettings theStorageSettings,
			DataSource theDataSource) {
		LocalContainerEntityManagerFactoryBean emf =
				HapiEntityManagerFactoryUtil.newEntityManagerFactory(theBeanFactory, theFhirContext, theStorageSettings);
		emf.setPersistenceUnitName("HAPI_PU");
		emf.setDataSource(theDataSource);
		Properties p = new Properties();
		p.put("hibernate.dialect", HapiFhirH2Dialect.class.getName());
		p.put("hibernate.hbm2ddl.auto", "update");
		p.put("hibernate.format_sql", "false");
		p.put("hibernate.show_sql", "false");
		p.put("hibernate.jdbc.batch_size", "20");
		p.put("hibernate.cache.use_query_cache", "false");
		p.put("hibernate.cache.use_second_level_cache", "false");
		p.put("hibernate.cache.use_structured_entries", "false");
		p.put("hibernate.cache.use_minimal_puts", "false");
		p.put("hibernate.archive.scanner", "org.hibernate.boot.archive.scan.internal.DisabledScanner");
		p.put("hibernate.search.enabled", "false");
		emf.setJpaProperties(p);
		return emf;
	}

	@Bean
	@Primary
	public JpaTransactionManager transactionManager(EntityManagerFactory theEntityManagerFactory) {
		JpaTransactionManager tm = new JpaTransactionManager();
		tm.setEntityManagerFactory(theEntityManagerFactory);
		return tm;
	}

	/** The FHIR REST servlet, mounted by {@link Main} at /fhir/*. */
	@Bean
	public RestfulServer restfulServer(
			FhirContext theFhirContext,
			IFhirSystemDao<?, ?> theSystemDao,
			JpaSystemProvider<?, ?> theSystemProvider,
			ResourceProviderFactory theResourceProviderFactory,
			DatabaseBackedPagingProvider thePagingProvider,
			JpaStorageSettings theStorageSettings,
			ISearchParamRegistry theSearchParamRegistry,
			IValidationSupport theValidationSupport) {
		theFhirContext.setNarrativeGenerator(new NullNarrativeGenerator());

		RestfulServer server = new RestfulServer(theFhirContext);
		server.registerProviders(theResourceProviderFactory.createProviders());
		server.registerProvider(theSystemProvider);

		if (fhirVersion().equals("dstu3")) {
			// JpaCapabilityStatementProvider builds an R4 CapabilityStatement (HAPI-1800 under DSTU3).
			@SuppressWarnings("unchecked")
			JpaConformanceProviderDstu3 capabilities = new JpaConformanceProviderDstu3(
					server,
					(IFhirSystemDao<org.hl7.fhir.dstu3.model.Bundle, org.hl7.fhir.dstu3.model.Meta>) theSystemDao,
					theStorageSettings,
					theSearchParamRegistry);
			capabilities.setImplementationDescription("caddy-fhir-imaging HAPI FHIR JPA test server (STU3)");
			server.setServerConformanceProvider(capabilities);
		} else {
			JpaCapabilityStatementProvider capabilities = new JpaCapabilityStatementProvider(
					server, theSystemDao, theStorageSettings, theSearchParamRegistry, theValidationSupport);
			capabilities.setImplementationDescription("caddy-fhir-imaging HAPI FHIR JPA test server");
			server.setServerConformanceProvider(capabilities);
		}

		thePagingProvider.setDefaultPageSize(20);
		thePagingProvider.setMaximumPageSize(1000);
		server.setPagingProvider(thePagingProvider);

		// Base URL used in Location headers and Bundle links: taken from each request's Host header
		// unless HAPI_SERVER_ADDRESS fixes it (e.g. the gateway's public base URL).
		String address = Settings.get("hapi.server.address", "HAPI_SERVER_ADDRESS", "");
		if (!address.isEmpty()) {
			server.setServerAddressStrategy(new HardcodedServerAddressStrategy(address));
		}

		server.setDefaultResponseEncoding(EncodingEnum.JSON);
		server.setETagSupport(ETagSupportEnum.ENABLED);
		registerSmartAuth(server);
		return server;
	}

	static boolean smartAuthEnabled() {
		return !Settings.get("hapi.auth.introspect", "HAPI_AUTH_INTROSPECT", "").isEmpty();
	}

	/**
	 * Only when HAPI_AUTH_INTROSPECT (or -Dhapi.auth.introspect) names an RFC 7662 introspection endpoint:
	 * SMART on FHIR bearer tokens are required and enforced through HAPI's authorization, search-narrowing
	 * and consent interceptors. Without it the server stays open.
	 */
	static void registerSmartAuth(RestfulServer theServer) {
		if (!smartAuthEnabled()) {
			return;
		}
		String introspect = Settings.get("hapi.auth.introspect", "HAPI_AUTH_INTROSPECT", "");
		BearerTokens tokens = new BearerTokens(new TokenIntrospector(
				URI.create(introspect),
				Settings.get("hapi.auth.client.id", "HAPI_AUTH_CLIENT_ID", "hapi-fhir"),
				Settings.get("hapi.auth.client.secret", "HAPI_AUTH_CLIENT_SECRET", "hapi-secret"),
				Integer.parseInt(Settings.get("hapi.auth.cache.seconds", "HAPI_AUTH_CACHE_SECONDS", "5"))));
		theServer.registerInterceptor(new SmartAuthorizationInterceptor(tokens));
		theServer.registerInterceptor(new SmartSearchNarrowingInterceptor(tokens));
		theServer.registerInterceptor(new ProxyConsentInterceptor(tokens));
		LoggerFactory.getLogger(HapiServerConfig.class)
				.info("SMART on FHIR bearer tokens required; introspection at {}", introspect);
	}
}
